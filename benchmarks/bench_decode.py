"""Decoding speed and accuracy: greedy vs CTC prefix beam search (widths 1, 5, 10, 50), with and without LM.

The model runs once over the split; every decoder then reads the same posteriors, so the speeds are of
decoding alone (utterances per second). Unless ``--lm`` is given, a 3-gram syllable LM is built from
the dataset's train transcripts (each sentence once: the demo corpus speaks every sentence in several
voices) with the split's own sentences excluded, so the WER gain is not flattered by the LM having
seen the test text. ``--lm-text`` adds more text (e.g. ../shared/data/sentences/train.tsv).

A second table compares the LM's two formats (when KenLM's ``build_binary`` is found): ARPA text against the KenLM
binary, by size, load time (the decoder's LM scorer built from the file) and beam-search speed and CER.

    .venv/bin/python -m benchmarks.bench_decode --model runs/demo/model --dataset data/processed/demo
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from ai2text_hf.data.loading import load_scoring_split
from ai2text_hf.data.prepare import load_prepared
from ai2text_hf.decoding import DecodingOptions
from ai2text_hf.decoding.kenlm_binary import find_build_binary, write_binary
from ai2text_hf.decoding.lm import build_lm, resolve_arpa
from ai2text_hf.evaluation.lm_tune import decode_posteriors, split_posteriors
from ai2text_hf.inference import Transcriber
from ai2text_hf.language_model_ai2text import WordScorer
from ai2text_hf.metrics import error_rates

from .common import REPO, print_table

WIDTHS = (1, 5, 10, 50)


def split_texts(dataset_dir: Path, split: str) -> list[str]:
    return list(load_prepared(dataset_dir)[split]["text"])


def build_demo_lm(dataset_dir: Path, split: str, output: Path, order: int, extra: list[str]) -> dict:
    """An LM from the unique train transcripts and ``extra`` text files, the ``split`` sentences excluded."""
    train, held_out = output / "train.txt", output / "held_out.txt"
    train.write_text("\n".join(dict.fromkeys(split_texts(dataset_dir, "train"))) + "\n", encoding="utf-8")
    held_out.write_text("\n".join(split_texts(dataset_dir, split)) + "\n", encoding="utf-8")
    return build_lm([train, *extra], output / "lm", order=order, exclude_files=[held_out])


def lm_formats(transcriber: Transcriber, batches, references: list[str], lm: Path, scratch: Path) -> None:
    """The ARPA text against the KenLM binary of the same LM: size, load time, beam 10 speed and CER."""
    tool = find_build_binary()
    if tool is None:
        print("\nLM formats: KenLM's build_binary not found (ai2text lm install-kenlm): binary row skipped")
        return
    arpa_dir, binary_dir = scratch / "arpa", scratch / "binary"
    arpa_dir.mkdir()
    binary_dir.mkdir()
    arpa = arpa_dir / "lm.arpa"
    arpa.write_bytes(resolve_arpa(lm).read_bytes())
    binary = write_binary(binary_dir, arpa, tool)
    tokens = transcriber.tokenizer.convert_ids_to_tokens(list(range(len(transcriber.tokenizer))))
    rows, base = [], None
    for name, path, size in (
        ("ARPA (baseline)", arpa, arpa.stat().st_size),
        ("KenLM binary (trie)", binary, binary.stat().st_size + (binary_dir / "words.txt").stat().st_size),
    ):
        loads = []
        for _ in range(3):
            start = time.perf_counter()
            WordScorer(tokens, transcriber.tokenizer.word_delimiter_token, path)
            loads.append(time.perf_counter() - start)
        start = time.perf_counter()
        hypotheses = decode_posteriors(transcriber, batches, DecodingOptions(beam_width=10, lm=str(path.parent)))
        speed = len(references) / (time.perf_counter() - start)
        cer = error_rates(references, hypotheses, transcriber.tokenizer.tone_placement)["cer"]
        base = base or (size, min(loads))
        rows.append(
            (
                name,
                f"{size / 1e6:.2f}",
                f"{size / base[0]:.2f}x",
                f"{1000 * min(loads):.1f}",
                f"{min(loads) / base[1]:.3f}x",
                f"{speed:.1f}",
                f"{100 * cer:.2f}%",
            )
        )
    print_table(
        "LM formats (the same LM): size, load time of the decoder's scorer (best of 3), beam 10 + LM",
        rows,
        ("format", "MB", "size vs ARPA", "load ms", "load vs ARPA", "utterances/s", "CER"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(REPO / "runs" / "demo" / "model"), help="trained model folder")
    parser.add_argument("--dataset", default=str(REPO / "data" / "processed" / "demo"), help="prepared dataset")
    parser.add_argument("--split", default="test", help="split to decode (default test)")
    parser.add_argument("--lm", help="LM folder (default: built from the train transcripts)")
    parser.add_argument("--order", type=int, default=3, help="order of the LM built when --lm is absent")
    parser.add_argument("--lm-text", nargs="*", default=[], help="more text for the LM built when --lm is absent")
    parser.add_argument("--lm-weight", type=float, help="LM weight (default: the LM's tuned value, else untuned)")
    parser.add_argument("--word-score", type=float, help="word score with the LM (default: as --lm-weight)")
    parser.add_argument("--widths", type=int, nargs="+", default=list(WIDTHS), help="beam widths")
    parser.add_argument("--limit", type=int, help="decode only the first N utterances")
    args = parser.parse_args()

    transcriber = Transcriber(args.model, device="cpu")
    dataset = load_scoring_split(
        Path(args.dataset), args.split, transcriber.feature_extractor, limit=args.limit, purpose="decode"
    ).dataset
    references = list(dataset["text"])
    batches = split_posteriors(transcriber, dataset)

    with tempfile.TemporaryDirectory() as scratch:
        lm = args.lm
        if lm is None:
            info = build_demo_lm(Path(args.dataset), args.split, Path(scratch), args.order, args.lm_text)
            lm = str(Path(scratch) / "lm")
            print(
                f"LM: {info['order']}-gram, {info['sentences']} train sentences, {info['excluded_sentences']} excluded"
            )
        configs = [("greedy", DecodingOptions())]
        configs += [(f"beam {w}", DecodingOptions(beam_width=w)) for w in args.widths]
        configs += [
            (
                f"beam {w} + LM",
                DecodingOptions(beam_width=w, lm=lm, lm_weight=args.lm_weight, word_score=args.word_score),
            )
            for w in args.widths
        ]
        rows = []
        for name, options in configs:
            start = time.perf_counter()
            hypotheses = decode_posteriors(transcriber, batches, options)
            seconds = time.perf_counter() - start
            rates = error_rates(references, hypotheses, transcriber.tokenizer.tone_placement)
            rows.append(
                (name, f"{len(references) / seconds:.1f}", f"{100 * rates['wer']:.2f}%", f"{100 * rates['cer']:.2f}%")
            )
            print(*rows[-1], file=sys.stderr, flush=True)  # progress; the table goes to stdout
        (Path(scratch) / "formats").mkdir()
        lm_formats(transcriber, batches, references, Path(lm), Path(scratch) / "formats")
    print_table(
        f"CTC decoding on {Path(args.dataset).name}/{args.split} ({len(references)} utterances), model {args.model}",
        rows,
        ("decoder", "utterances/s", "WER (syllables)", "CER"),
    )


if __name__ == "__main__":
    main()
