"""``python -m milr.bench``."""

from milr.bench.cli import main

main()
