"""Generated wire code for ``proto/connector/v1`` (never edited by hand).

Regenerate with ``bash dev/gen-protos.sh``; CI fails when it drifts.
"""
