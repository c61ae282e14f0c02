"""``python -m narun`` runs the command-line interface."""

from narun.cli.main import main

main()
