"""The ``ai2text`` command: one entry point, one subcommand per stage.

Each stage module (data, training, evaluation, models) adds its own subcommands and sets each one's handler
with ``set_defaults(handler=...)``. Handlers import what they need (datasets, the Trainer, the decoders) only
when they run, and importing this package loads neither torch nor transformers: ``--help`` and an up-to-date
``prepare`` answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import corpus, data, evaluation, models, training

STAGES = (data, training, evaluation, models, corpus)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ai2text",
        description="Train, evaluate and use Vietnamese speech-to-text (CTC) models on the Hugging Face stack.",
    )
    parser.set_defaults(takes_recipe_overrides=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for stage in STAGES:
        stage.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not args.takes_recipe_overrides:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.recipe_overrides = extra  # --key value pairs for train and tune: recipe keys, parsed by load_recipe
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        args.handler(args)
    except (OSError, ValueError) as error:  # OSError: a missing file, a full disk, a refused connection
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
