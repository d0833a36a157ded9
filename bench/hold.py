"""Run the hold benchmark without the CLI entry point: `python bench/hold.py [options]`."""

import sys

from sioplay.cli import app

if __name__ == "__main__":
    app(["bench", "hold", *sys.argv[1:]])
