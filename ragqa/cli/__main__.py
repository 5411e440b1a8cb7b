"""`python -m ragqa.cli` (the tests' subprocesses and the kill-loop script use it)."""

from ragqa.cli.main import main

main()
