"""Flower processes a node runs and talks to: SuperLink, SuperNode, the governed executor.

Open-source Flower brings the engine; these modules run it the way a node must: TLS
on every link, SuperNode authentication on, the node's own runner in place of
``flwr-clientapp``, and nothing installed from a researcher's bundle.
"""
