"""Prepare entry point; same options as `ai2text prepare`."""

import sys

from ai2text_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))
