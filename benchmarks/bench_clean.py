"""Cleaning (``ai2text clean``): finding deliberately corrupted transcripts in a test split.

5 % of the rows of the demo test split get a corrupted transcript, in turn: swapped (another row's),
truncated (its first half), shuffled (its words in random order), replaced by another language (English).
``clean`` runs with its default thresholds; a corrupted row is found when it is dropped. Each criterion
alone, from the same scores, is the baseline.

    .venv/bin/python -m benchmarks.bench_clean --model runs/demo/model [--csv data/demo/metadata.csv]

``--real-keywords``: the same on held-out rows of ../shared/data/real-keywords-8k (8 phrases, 8 kHz telephone
audio), where a corrupted row gets another of the 8 phrases, with a model fine-tuned on the other rows. The
split is fixed (seeded); ``--write-split FOLDER`` writes it as ``train.csv`` and ``heldout.csv`` for
``ai2text prepare`` / ``train`` (docs/corpus-tools.md has the four commands). Without ../shared it skips.

    .venv/bin/python -m benchmarks.bench_clean --real-keywords --write-split runs/keywords-data
    .venv/bin/python -m benchmarks.bench_clean --real-keywords --model runs/keywords-finetune/model
"""

from __future__ import annotations

import argparse
import csv
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import REPO, SHARED, print_table

KEYWORDS = SHARED / "data" / "real-keywords-8k"
HELD_OUT = 1000  # real-keywords-8k rows kept out of fine-tuning, for the cleaning measurement

ENGLISH = [
    "the quick brown fox jumps over the lazy dog",
    "please call me back when you get this message",
    "we will meet at the station tomorrow morning",
    "she sells sea shells by the sea shore",
]
KINDS = ("swapped", "truncated", "shuffled", "other language")


def corrupt(rows: list[dict], share: float, seed: int, phrases: list[str] | None) -> set[int]:
    """Corrupt ``share`` of ``rows`` in place; the indices corrupted. With ``phrases`` (a closed set, as in
    real-keywords-8k), a corrupted row gets another phrase of the set instead."""
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(rows)), max(1, round(share * len(rows)))))
    for n, index in enumerate(chosen):
        text = rows[index]["transcript"]
        if phrases:
            rows[index]["transcript"] = rng.choice([p for p in phrases if p != text])
            continue
        kind = KINDS[n % len(KINDS)]
        words = text.split()
        if kind == "swapped":
            other = rng.choice([r["transcript"] for i, r in enumerate(rows) if i != index and r["transcript"] != text])
            rows[index]["transcript"] = other
        elif kind == "truncated":
            rows[index]["transcript"] = " ".join(words[: max(1, len(words) // 2)])
        elif kind == "shuffled":
            while len(words) > 1 and " ".join(words) == text:
                rng.shuffle(words)
            rows[index]["transcript"] = " ".join(words)
        else:
            rows[index]["transcript"] = rng.choice(ENGLISH)
    return set(chosen)


def keyword_split(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(fine-tuning, held-out) rows of real-keywords-8k, file paths absolute: ``HELD_OUT`` rows drawn with
    ``seed`` (the rows are ordered by phrase, so a random draw keeps every phrase in both); the fine-tuning rows
    carry a ``split`` column with 5 % of them for validation (no speaker labels, so prepare cannot carve one)."""
    with (KEYWORDS / "metadata.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["file_path"] = str(KEYWORDS / row["file_path"])
    rng = random.Random(seed)
    held = set(rng.sample(range(len(rows)), HELD_OUT))
    train = [r for i, r in enumerate(rows) if i not in held]
    validation = set(rng.sample(range(len(train)), round(0.05 * len(train))))
    train = [{**r, "split": "validation" if i in validation else "train"} for i, r in enumerate(train)]
    return train, [r for i, r in enumerate(rows) if i in held]


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="default runs/demo/model, or runs/keywords-finetune/model with --real-keywords")
    parser.add_argument("--csv", default=str(REPO / "data" / "demo" / "metadata.csv"))
    parser.add_argument("--split", default="test", help="rows of this split (all rows when the CSV has none)")
    parser.add_argument("--rows", type=int, default=None, help="first N rows of the split")
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--closed-set", action="store_true", help="corrupt with another phrase of the CSV")
    parser.add_argument(
        "--real-keywords", action="store_true", help="held-out real-keywords-8k rows, closed-set corruption"
    )
    parser.add_argument("--write-split", metavar="FOLDER", help="with --real-keywords: write the split CSVs, then stop")
    args = parser.parse_args()
    if args.real_keywords and not (KEYWORDS / "metadata.csv").is_file():
        print(f"skipped: {KEYWORDS} is not here (the real-keywords-8k measurement needs ../shared/data)")
        return
    if args.write_split:
        if not args.real_keywords:
            parser.error("--write-split needs --real-keywords")
        train, held = keyword_split()
        for name, part in (("train.csv", train), ("heldout.csv", held)):
            if (Path(args.write_split) / name).exists():
                raise SystemExit(f"{Path(args.write_split) / name} already exists: remove it or choose another folder")
            write_csv(Path(args.write_split) / name, part)
        print(f"wrote {len(train)} train and {len(held)} held-out rows to {args.write_split}/")
        return
    args.model = args.model or ("runs/keywords-finetune/model" if args.real_keywords else "runs/demo/model")
    if args.real_keywords and not Path(args.model).is_dir():
        raise SystemExit(
            f"{args.model} is not a model folder: fine-tune one on the train part first (docs/corpus-tools.md, "
            "'Example: real keyword recordings'), then pass it with --model"
        )

    import torch

    from ai2text_hf.corpus.align import Aligner
    from ai2text_hf.corpus.clean import CleanOptions, clean_metadata, reasons_for
    from ai2text_hf.inference import Transcriber

    torch.set_num_threads(2)
    if args.real_keywords:
        source, args.split = KEYWORDS / "metadata.csv", f"{HELD_OUT} held-out rows"
        rows = keyword_split()[1]
    else:
        source = Path(args.csv)
        with source.open(encoding="utf-8", newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r.get("split", args.split) in (args.split, None, "")]
        for row in rows:
            row["file_path"] = str((source.parent / row["file_path"]).resolve())
    rows = rows[: args.rows]
    phrases = sorted({r["transcript"] for r in rows}) if args.closed_set or args.real_keywords else None
    corrupted = corrupt(rows, args.share, seed=0, phrases=phrases)
    aligner = Aligner(Transcriber(args.model, device="cpu"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "metadata.csv"
        write_csv(path, rows)
        start = time.perf_counter()
        result = clean_metadata(aligner, path, Path(folder) / "out" / "metadata.csv", options=CleanOptions())
        seconds = time.perf_counter() - start
    line_to_index = {score.line: i for i, score in enumerate(result.scores)}

    def row(name: str, flagged: set[int]) -> tuple[str, ...]:
        hits = len(flagged & corrupted)
        precision = hits / len(flagged) if flagged else 0.0
        return (name, f"{len(flagged)}", f"{100 * hits / len(corrupted):.1f}", f"{100 * precision:.1f}")

    table = [
        row("all criteria (ai2text clean defaults)", {line_to_index[line] for line in result.reasons}),
        row(
            "any one criterion (--strict)",
            {i for i, s in enumerate(result.scores) if reasons_for(s, result.thresholds, strict=True)},
        ),
    ]
    for key in ("max_loss_per_char", "max_cer", "min_align_score"):
        only = {
            k: (v if k == key else (float("inf") if k.startswith("max_") else float("-inf")))
            for k, v in result.thresholds.items()
        }
        flagged = {i for i, s in enumerate(result.scores) if reasons_for(s, only, strict=True)}
        table.append(row(f"baseline: {key} = {result.thresholds[key]:.3f} alone", flagged))
    print_table(
        f"Cleaning: {len(corrupted)} of {len(rows)} rows of {source} ({args.split}) corrupted"
        + (" (another phrase of the set)" if phrases else " (swapped, truncated, shuffled, English)"),
        table,
        ("criteria", "rows dropped", "recall %", "precision %"),
    )
    total = sum(s.duration for s in result.scores)
    print(
        f"\nScored {len(rows)} rows ({total / 60:.1f} min of audio) in {seconds:.0f} s ({total / seconds:.0f}x real "
        "time). Targets: recall >= 95 % at precision >= 90 %."
    )
    for key in ("loss_per_char", "cer", "align_score"):
        clean = np.asarray([getattr(s, key) for i, s in enumerate(result.scores) if i not in corrupted])
        bad = np.asarray([getattr(result.scores[i], key) for i in sorted(corrupted)])
        print(
            f"- {key}: clean rows median {np.median(clean):.3f}, p99 {np.percentile(clean, 99):.3f}, "
            f"max {clean.max():.3f}; corrupted rows min {bad.min():.3f}, median {np.median(bad):.3f}"
        )
    missed = [result.scores[i] for i in sorted(corrupted) if result.scores[i].line not in result.reasons]
    for score in missed:
        print(
            f"- missed line {score.line}: cer {score.cer:.2f}, loss/char {score.loss_per_char:.2f}, "
            f"align {score.align_score:.2f}: {score.transcript!r} (model heard {score.hypothesis!r})"
        )


if __name__ == "__main__":
    main()
