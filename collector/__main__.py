"""`python -m collector` runs the command line."""

from collector.cli import main

main()
