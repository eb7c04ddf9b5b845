"""Evaluate or transcribe with the old system's flags, on top of `ai2text evaluate` / `ai2text transcribe`.

    python scripts/evaluate.py --model_path runs/demo/model --test_data data/processed/demo --split test
    python scripts/evaluate.py --model_path runs/demo/model --audio_file a.wav --use_beam_search --beam_width 10

Every other option of those subcommands (--lm, --hotwords, --html, --output, --json, ...) passes through.
"""

from __future__ import annotations

import argparse
import sys

from ai2text_hf.cli import main


def translate(argv: list[str]) -> list[str]:
    """The ``ai2text`` command line for the old system's flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_path", "--model", required=True, help="Model folder, e.g. runs/demo/model.")
    parser.add_argument("--test_data", "--dataset", help="Prepared dataset folder to evaluate on.")
    parser.add_argument("--split", default="test", help="Split to evaluate (default test).")
    parser.add_argument("--audio_file", nargs="+", help="Transcribe these audio files instead of evaluating.")
    parser.add_argument("--use_beam_search", action="store_true", help="Beam search instead of greedy decoding.")
    parser.add_argument("--beam_width", type=int, help="Beam width (default 10 with --use_beam_search).")
    args, rest = parser.parse_known_args(argv)
    decoding = []
    if args.use_beam_search or args.beam_width:
        decoding = ["--beam-width", str(args.beam_width or 10)]
    if args.audio_file:
        return ["transcribe", "--model", args.model_path, *decoding, *rest, *args.audio_file]
    if not args.test_data:
        parser.error("give --test_data to evaluate, or --audio_file to transcribe")
    return [
        "evaluate",
        "--model",
        args.model_path,
        "--dataset",
        args.test_data,
        "--split",
        args.split,
        *decoding,
        *rest,
    ]


if __name__ == "__main__":
    sys.exit(main(translate(sys.argv[1:])))
