"""``python -m node`` runs the ``hanse`` CLI."""

from node.cli import main

main()
