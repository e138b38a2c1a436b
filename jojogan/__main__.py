"""``python -m jojogan`` runs the command-line interface."""

from jojogan.cli import main

if __name__ == "__main__":  # a spawned worker process (the alignment workers) imports this module too
    main()
