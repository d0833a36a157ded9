"""Run the roster benchmark without the CLI entry point: `python bench/roster.py [options]`."""

import sys

from sioplay.cli import app

if __name__ == "__main__":
    app(["bench", "roster", *sys.argv[1:]])
