"""Evaluate a model folder on a split of a prepared dataset.

Writes ``eval_results.json`` (metrics as fractions under lowercase keys, plus model, data version and
decoding settings) and ``predictions.csv`` (one row per utterance: id, reference, hypothesis, cer, wer)
— the contract other tools and the model card read — and appends a summary to the model folder's
``evaluations.json``. ``html=True`` adds ``report.html``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..data.audio import with_features
from ..data.features import assert_features_match
from ..data.prepare import load_prepared, read_manifest
from ..decoding import DecodingOptions
from ..inference import Transcriber, duration_batches
from ..metrics import error_analysis, utterance_error_rates
from .html import write_html_report
from .report import RESULTS_NAME

PREDICTIONS_NAME = "predictions.csv"
HTML_NAME = "report.html"
HISTORY_NAME = "evaluations.json"
PREDICTION_COLUMNS = ["id", "reference", "hypothesis", "cer", "wer"]
# What evaluations.json keeps of each run: enough for a model card line and to find the full results.
SUMMARY_KEYS = ["wer", "cer", "accuracy", "sentence_accuracy", "tone_error_rate", "rtf", "num_samples", "hours"]


@dataclass
class EvalResult:
    metrics: dict
    output_dir: Path


def default_output_dir(model_dir: Path, split: str) -> Path:
    """``runs/<name>/eval/<split>`` for a model in ``runs/<name>/model``, else beside the model."""
    base = model_dir.parent if model_dir.name == "model" else model_dir
    return base / "eval" / split


def _data_version(dataset_dir: Path, manifest: dict) -> dict:
    source = manifest.get("source", {})
    return {"name": dataset_dir.name, "created": manifest.get("created"), "source_sha256": source.get("sha256")}


def _write_predictions(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        for row in rows:
            writer.writerow([row["id"], row["reference"], row["hypothesis"], f"{row['cer']:.4f}", f"{row['wer']:.4f}"])


def _append_history(model_dir: Path, metrics: dict, output_dir: Path) -> None:
    """Add this run to ``<model_dir>/evaluations.json`` (a list, oldest first) for the model card."""
    path = model_dir / HISTORY_NAME
    history = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    history.append(
        {
            "date": metrics["date"],
            "dataset": metrics["data_version"]["name"],
            "split": metrics["split"],
            **{key: metrics[key] for key in SUMMARY_KEYS},
            "decoding": metrics["decoding"],
            "results": str(output_dir / RESULTS_NAME),
        }
    )
    path.write_text(json.dumps(history, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_split(
    transcriber: Transcriber,
    dataset_dir: Path,
    split: str,
    limit: int | None = None,
    manifest: dict | None = None,
    purpose: str = "evaluate",
):
    """The first ``limit`` rows of a prepared ``split`` with numpy ``input_features`` (computed when read where it
    stores audio), after checking that its features are the model's; a clear error for a missing or empty split."""
    manifest = manifest or read_manifest(dataset_dir)
    assert_features_match(manifest["feature_extractor"], transcriber.feature_extractor.to_dict(), str(dataset_dir))
    data = load_prepared(dataset_dir)
    if split not in data:
        raise ValueError(f"{dataset_dir} has no split '{split}'; it has {sorted(data)}.")
    dataset = data[split]
    if limit:
        dataset = dataset.select(range(min(limit, len(dataset))))
    if len(dataset) == 0:
        raise ValueError(f"Split '{split}' of {dataset_dir} is empty: nothing to {purpose}.")
    return with_features(dataset, transcriber.feature_extractor)


def evaluate_split(
    model_dir: str | Path,
    dataset_dir: str | Path,
    split: str = "test",
    output_dir: str | Path | None = None,
    max_batch_seconds: float = 240.0,
    limit: int | None = None,
    decoding: DecodingOptions | None = None,
    html: bool = False,
) -> EvalResult:
    """Decode ``split`` from its stored features, score it, write the result files."""
    model_dir, dataset_dir = Path(model_dir), Path(dataset_dir)
    transcriber = Transcriber(model_dir, max_batch_seconds=max_batch_seconds, decoding=decoding)
    manifest = read_manifest(dataset_dir)
    dataset = load_split(transcriber, dataset_dir, split, limit, manifest, "evaluate")
    durations = [float(d) for d in dataset["duration"]]

    hypotheses: list[str] = [""] * len(dataset)
    confidences: list[float] = [0.0] * len(dataset)
    start = time.perf_counter()
    for batch in duration_batches(durations, max_batch_seconds):
        rows = dataset[batch]
        for index, decoded in zip(batch, transcriber.decode_features(rows["input_features"], word_timestamps=False)):
            hypotheses[index] = decoded.text
            confidences[index] = decoded.confidence
    elapsed = time.perf_counter() - start

    references = list(dataset["text"])
    speakers = [str(s) for s in dataset["speaker_id"]] if "speaker_id" in dataset.column_names else None
    tone = transcriber.tokenizer.tone_placement
    audio_seconds = float(np.sum(durations))
    metrics = {
        **error_analysis(references, hypotheses, tone, speakers=speakers),
        "num_samples": len(dataset),
        "hours": audio_seconds / 3600,
        "rtf": elapsed / audio_seconds,
        "mean_confidence": float(np.mean(confidences)),
        "model": str(model_dir),
        "dataset": str(dataset_dir),
        "data_version": _data_version(dataset_dir, manifest),
        "split": split,
        "decoding": transcriber.decoding.to_dict(),
        "features": "precomputed (dataset)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out = Path(output_dir) if output_dir else default_output_dir(model_dir, split)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_NAME).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    predictions = [
        {"id": uid, "reference": ref, "hypothesis": hyp, "duration": duration, "confidence": confidence}
        | utterance_error_rates(ref, hyp, tone)
        for uid, ref, hyp, duration, confidence in zip(dataset["id"], references, hypotheses, durations, confidences)
    ]
    _write_predictions(out / PREDICTIONS_NAME, predictions)
    _append_history(model_dir, metrics, out)
    if html:
        write_html_report(metrics, predictions, out / HTML_NAME)
    return EvalResult(metrics=metrics, output_dir=out)
