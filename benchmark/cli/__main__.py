"""``python -m benchmark.cli`` = ``bench``."""

from benchmark.cli import main

main()
