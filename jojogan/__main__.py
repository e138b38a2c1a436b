"""``python -m jojogan`` runs the command-line interface."""

from jojogan.cli import main

main()
