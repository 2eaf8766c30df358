"""`python -m runner` is `runner`."""

from runner.cli.commands import main

main()
