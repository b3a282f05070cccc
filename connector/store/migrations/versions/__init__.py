"""Migration scripts, oldest first: ``000N_what.py``."""
