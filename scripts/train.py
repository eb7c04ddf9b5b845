"""Train entry point for `accelerate launch scripts/train.py --recipe ...`; same options as `ai2text train`."""

import sys

from ai2text_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
