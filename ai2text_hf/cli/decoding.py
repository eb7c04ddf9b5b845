"""Decoding options shared by the commands that decode (``evaluate``, ``transcribe``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..decoding import DecodingOptions


def add_decoding_options(p: argparse.ArgumentParser) -> None:
    """The decoding argument group: greedy unless a beam, an LM or hotwords are asked for."""
    g = p.add_argument_group(
        "decoding",
        "Beam search with the model folder's language model (language_model/) when it has one, else greedy; "
        "--no-lm decodes without it; beam search also with --beam-width, --lm or --hotwords.",
    )
    g.add_argument(
        "--beam-width",
        type=int,
        help="CTC prefix beam search width (default: with an LM the beam `lm tune` tuned it at, else 10; 10 with "
        "--hotwords; else 1 = greedy).",
    )
    g.add_argument(
        "--no-lm",
        action="store_true",
        help="Decode without the model folder's language model: greedy unless --beam-width or --hotwords.",
    )
    g.add_argument(
        "--lm", help="Another n-gram LM folder from `ai2text lm build` (or an ARPA file) instead of the model's own."
    )
    g.add_argument(
        "--lm-weight",
        type=float,
        help="Weight of the LM log probability (default: the value `ai2text lm tune` stored with the LM, else 0.5).",
    )
    g.add_argument(
        "--word-score",
        type=float,
        help="Bonus per word with --lm; raise it if the LM merges words (default: the LM's tuned value, else 3).",
    )
    g.add_argument("--hotwords", help="File of phrases to boost (names, places, terms), one per line.")
    g.add_argument("--hotword-weight", type=float, help="Bonus per letter of a hotword phrase (default 1.5).")
    g.add_argument("--token-beam", type=int, help="Tokens tried per frame in beam search (default 5).")
    g.add_argument("--beam-threshold", type=float, help="Drop hypotheses this far below the best (default 15).")


def decoding_options(args: argparse.Namespace) -> DecodingOptions:
    """The decoding arguments as a :class:`DecodingOptions` for ``args.model`` (its own LM unless ``--no-lm``)."""
    from ..decoding import DecodingOptions

    return DecodingOptions.for_model(
        args.model,
        use_lm=not args.no_lm,
        beam_width=args.beam_width,
        lm=args.lm,
        lm_weight=args.lm_weight,
        word_score=args.word_score,
        hotwords=args.hotwords,
        hotword_weight=args.hotword_weight,
        token_beam=args.token_beam,
        beam_threshold=args.beam_threshold,
    )
