"""Evaluate entry point; same options as `ai2text evaluate`."""

import sys

from ai2text_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
