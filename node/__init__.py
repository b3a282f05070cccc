"""The deployable Hanse node: configuration, process, servers and the ``hanse`` CLI."""

__all__: list[str] = []
