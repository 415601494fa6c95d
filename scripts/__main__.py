"""``python -m atrium.scripts`` runs the operator command line."""

from atrium.scripts.cli import main

main()
