"""Governed training on a node: the aggregator role, agreement-driven SuperNodes, the runner.

``aggregator`` runs the researcher's side (SuperLink, runs); ``connectivity`` keeps a
city's SuperNodes in step with its agreements; ``runner`` is the process that runs
each ClientApp task under the node's checks and guard.
"""
