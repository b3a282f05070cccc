"""Server interceptors: one cross-cutting concern each."""
