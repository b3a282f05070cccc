"""gRPC servicers: the protocol API (peers) and the management API (operator)."""
