"""``python -m taskloom`` runs the CLI."""

from taskloom.cli import main

main()
