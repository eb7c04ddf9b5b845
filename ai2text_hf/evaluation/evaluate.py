"""Evaluate a model folder on a split of a prepared dataset.

Writes ``eval_results.json`` (metrics as fractions under lowercase keys) and ``predictions.csv``
(one row per utterance) — the contract other tools and the model card read.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.features import assert_features_match
from ..data.prepare import load_prepared, read_manifest
from ..inference import Transcriber, duration_batches
from ..metrics import error_rates, utterance_error_rates


@dataclass
class EvalResult:
    metrics: dict
    output_dir: Path


def default_output_dir(model_dir: Path, split: str) -> Path:
    """``runs/<name>/eval/<split>`` for a model in ``runs/<name>/model``, else beside the model."""
    base = model_dir.parent if model_dir.name == "model" else model_dir
    return base / "eval" / split


def evaluate_split(
    model_dir: str | Path,
    dataset_dir: str | Path,
    split: str = "test",
    output_dir: str | Path | None = None,
    max_batch_seconds: float = 240.0,
    limit: int | None = None,
) -> EvalResult:
    """Greedy-decode ``split`` from its stored features, score it, write the result files."""
    model_dir, dataset_dir = Path(model_dir), Path(dataset_dir)
    transcriber = Transcriber(model_dir, max_batch_seconds=max_batch_seconds)
    manifest = read_manifest(dataset_dir)
    assert_features_match(manifest["feature_extractor"], transcriber.feature_extractor.to_dict(), str(dataset_dir))
    data = load_prepared(dataset_dir)
    if split not in data:
        raise ValueError(f"{dataset_dir} has no split '{split}'; it has {sorted(data)}.")
    dataset = data[split]
    if limit:
        dataset = dataset.select(range(min(limit, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"Split '{split}' of {dataset_dir} is empty: nothing to evaluate.")
    dataset = dataset.with_format("numpy", columns=["input_features"], output_all_columns=True)
    durations = [float(d) for d in dataset["duration"]]

    hypotheses: list[str] = [""] * len(dataset)
    start = time.perf_counter()
    for batch in duration_batches(durations, max_batch_seconds):
        rows = dataset[batch]
        for index, decoded in zip(batch, transcriber.decode_features(rows["input_features"], word_timestamps=False)):
            hypotheses[index] = decoded.text
    elapsed = time.perf_counter() - start

    references = list(dataset["text"])
    tone = transcriber.tokenizer.tone_placement
    totals = error_rates(references, hypotheses, tone)
    audio_seconds = float(np.sum(durations))
    metrics = {
        "wer": totals["wer"],
        "cer": totals["cer"],
        "num_samples": len(dataset),
        "hours": audio_seconds / 3600,
        "rtf": elapsed / audio_seconds,
        "model": str(model_dir),
        "dataset": str(dataset_dir),
        "split": split,
        "decoding": {"method": "greedy"},
        "features": "precomputed (dataset)",
    }
    out = Path(output_dir) if output_dir else default_output_dir(model_dir, split)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_results.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False), encoding="utf-8")
    with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "reference", "hypothesis", "cer", "wer"])
        for uid, ref, hyp in zip(dataset["id"], references, hypotheses):
            rates = utterance_error_rates(ref, hyp, tone)
            writer.writerow([uid, ref, hyp, f"{rates['cer']:.4f}", f"{rates['wer']:.4f}"])
    return EvalResult(metrics=metrics, output_dir=out)
