"""Run the join-storm benchmark without the CLI entry point: `python bench/join_storm.py [options]`."""

import sys

from sioplay.cli import app

if __name__ == "__main__":
    app(["bench", "join-storm", *sys.argv[1:]])
