"""Fine-tuning on a small real corpus: the demo model as a base against training from scratch, at equal minutes.

Data: ``../shared/data/real-syllables`` (real isolated syllables of one speaker). A seeded split by row gives
``--train-count`` syllables to train on, 200 to validate and the rest to test: every syllable occurs once, so the
test words are never in the fine-tuning set. Each arm trains for each budget in ``--minutes`` on the same
machine: the base with ``recipes/finetune-cpu.yaml`` (``init_from`` the model), scratch with the demo recipe
(the recipe a user would train from scratch with). Greedy CER on the test syllables; the ratio is scratch / base.
At the longest budget three more arms: scratch with augmentation off (the strongest scratch baseline in a few
minutes), the base with augmentation on, and the base with its front end and first ``--frozen-layers`` encoder
layers frozen. Every arm evaluates every 4 epochs. Skips with a note when ``../shared`` is absent.

    python -m benchmarks.bench_adaptation --model runs/demo/model [--minutes 2 4 6] [--frozen-layers 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ai2text_hf import AI2TextFeatureExtractor

from .common import REPO, SHARED, print_table

SYLLABLES = SHARED / "data" / "real-syllables"
VAL_COUNT = 200
VALIDATE_EVERY = 4  # both arms evaluate equally often: an epoch of 1,620 syllables lasts seconds


def split_csv(output: Path, train_count: int, seed: int = 0) -> Path:
    """The real-syllables metadata with a seeded train/val/test split column; paths stay relative to its folder."""
    with open(SYLLABLES / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    order = random.Random(seed).sample(range(len(rows)), len(rows))
    split = {index: "train" for index in order[:train_count]}
    split |= {index: "val" for index in order[train_count : train_count + VAL_COUNT]}
    with open(output, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_path", "transcript", "split", "speaker_id"])
        for index, row in enumerate(rows):
            writer.writerow([row["file_path"], row["transcript"], split.get(index, "test"), row["speaker_id"]])
    return output


def ai2text(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "ai2text_hf.cli", *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"ai2text {args[0]} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")


def prepare(model: Path, csv_path: Path, output: Path) -> Path:
    """Audio with the base model's feature settings (its pitch keys); on the fly, as augmentation needs."""
    extractor = AI2TextFeatureExtractor.from_pretrained(model)
    pitch = ["--pitch", "--pitch-norm-window", str(extractor.pitch_norm_window or 0)] if extractor.pitch else []
    ai2text(
        "prepare", "--csv", str(csv_path), "--audio-root", str(SYLLABLES), "--output", str(output), *pitch,
        "--on-the-fly",
    )  # fmt: skip
    return output


def train_and_score(recipe: str, dataset: Path, run: Path, minutes: float, *extra: str) -> tuple[float, float, float]:
    """(test CER, tone error rate, wall seconds) of one run of ``minutes``."""
    start = time.monotonic()
    ai2text("train", "--recipe", recipe, "--dataset", str(dataset), "--output-dir", str(run),
            "--max_train_minutes", str(minutes), "--num_epochs", "1000", "--validate_every", str(VALIDATE_EVERY),
            "--disable_tqdm", "true", *extra)  # fmt: skip
    seconds = time.monotonic() - start
    ai2text("evaluate", "--model", str(run / "model"), "--dataset", str(dataset), "--split", "test",
            "--output", str(run / "eval"))  # fmt: skip
    results = json.loads((run / "eval" / "eval_results.json").read_text(encoding="utf-8"))
    return results["cer"], results.get("tone_error_rate", float("nan")), seconds


def variants(args: argparse.Namespace, model: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    """(name, recipe, extra arguments) of the arms run at the longest budget only."""
    arms = [
        ("scratch without augmentation", args.scratch_recipe, ("--augmentation.enabled", "false")),
        ("base with augmentation", args.finetune_recipe, ("--init_from", str(model), "--augmentation.enabled", "true")),
    ]
    if args.frozen_layers:
        freeze = ("--freeze_feature_encoder", "true", "--freeze_layers", str(args.frozen_layers))
        arms.append((f"base, front end + {args.frozen_layers} layers frozen", args.finetune_recipe,
                     ("--init_from", str(model), *freeze)))  # fmt: skip
    return arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/demo/model", help="the base model (the demo model)")
    parser.add_argument("--minutes", nargs="+", type=float, default=[2, 4, 6], help="training budgets per arm")
    parser.add_argument("--train-count", type=int, default=1620, help="real syllables to train on")
    parser.add_argument("--finetune-recipe", default="recipes/finetune-cpu.yaml")
    parser.add_argument("--scratch-recipe", default="recipes/demo-cpu.yaml")
    parser.add_argument(
        "--frozen-layers", type=int, default=3,
        help="also fine-tune at the longest budget with the front end and this many encoder layers frozen (0: skip)",
    )  # fmt: skip
    args = parser.parse_args()
    title = "Fine-tuning on real speech: base vs from scratch at equal minutes (real-syllables, greedy)"
    if not SYLLABLES.is_dir():
        print_table(title, [("skipped: ../shared not present", "", "", "", "")], ("minutes", "", "", "", ""))
        return
    model = (REPO / args.model).resolve()
    work = Path(tempfile.mkdtemp(prefix="ai2text-adaptation-"))
    rows, variant_rows, base_cer = [], [], {}
    try:
        csv_path = split_csv(work / "syllables.csv", args.train_count)
        data = prepare(model, csv_path, work / "data")
        for minutes in args.minutes:
            base = train_and_score(args.finetune_recipe, data, work / f"base-{minutes:g}", minutes,
                                   "--init_from", str(model))  # fmt: skip
            scratch = train_and_score(args.scratch_recipe, data, work / f"scratch-{minutes:g}", minutes)
            base_cer[minutes] = base[0]
            rows.append(
                (
                    f"{minutes:g}",
                    f"{100 * base[0]:.1f} %",
                    f"{100 * scratch[0]:.1f} %",
                    f"**{scratch[0] / base[0]:.2f}x**",
                    f"{100 * base[1]:.1f} % / {100 * scratch[1]:.1f} %",
                    f"{base[2] / 60:.1f} / {scratch[2] / 60:.1f}",
                )
            )
        longest = max(args.minutes)
        for index, (name, recipe, extra) in enumerate(variants(args, model)):
            cer = train_and_score(recipe, data, work / f"variant-{index}", longest, *extra)[0]
            variant_rows.append((name, f"{100 * cer:.1f} %", f"{cer / base_cer[longest]:.2f}x"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\nBase: {args.model} with {args.finetune_recipe}; scratch: {args.scratch_recipe}. {args.train_count} real "
        f"syllables to train, {VAL_COUNT} to validate, the other syllables of the speaker to test (unseen words)."
    )
    print_table(
        title,
        rows,
        ("minutes", "base CER", "scratch CER", "scratch / base", "wrong only in tone (b / s)", "wall min (b / s)"),
    )
    print_table(
        f"Other arms at {max(args.minutes):g} minutes (CER / the fine-tuned base's: above 1 is worse)",
        variant_rows,
        ("arm", "CER", "vs base"),
    )


if __name__ == "__main__":
    main()
