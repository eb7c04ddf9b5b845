"""Evaluate a model folder on a split of a prepared dataset.

Writes ``eval_results.json`` (metrics as fractions under lowercase keys, plus model, data version and
decoding settings) and ``predictions.csv`` (one row per utterance: id, reference, hypothesis, cer, wer)
— the contract other tools and the model card read — into the run folder (``runs/<name>/eval/...``), never
into the model folder, which is what ``push`` uploads. ``html=True`` adds ``report.html``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..data.loading import load_scoring_split, stores_features
from ..decoding import DecodingOptions
from ..inference import Transcriber, duration_batches
from ..metrics import error_analysis, utterance_error_rates
from .html import write_html_report
from .report import RESULTS_NAME

PREDICTIONS_NAME = "predictions.csv"
HTML_NAME = "report.html"
PREDICTION_COLUMNS = ["id", "reference", "hypothesis", "cer", "wer"]


@dataclass
class EvalResult:
    metrics: dict
    output_dir: Path


def default_output_dir(model_dir: Path, split: str, decoding: DecodingOptions | None = None) -> Path:
    """``runs/<name>/eval/<split>`` for a model in ``runs/<name>/model``, else ``<model>-eval/<split>`` beside the
    model (never inside it); beam search adds ``-beam<width>`` and an LM ``-lm``, so decodings don't overwrite."""
    base = model_dir.parent / "eval" if model_dir.name == "model" else model_dir.parent / f"{model_dir.name}-eval"
    if decoding is not None and decoding.method == "beam":
        split += f"-beam{decoding.beam_width}" + ("-lm" if decoding.lm else "")
    return base / split


def _data_version(dataset_dir: Path, manifest: dict) -> dict:
    source = manifest.get("source", {})
    return {"name": dataset_dir.name, "created": manifest.get("created"), "source_sha256": source.get("sha256")}


def _write_predictions(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        for row in rows:
            writer.writerow([row["id"], row["reference"], row["hypothesis"], f"{row['cer']:.4f}", f"{row['wer']:.4f}"])


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
    """Decode ``split`` (stored features, or the model's inputs computed from its audio), score it, write the
    result files."""
    model_dir, dataset_dir = Path(model_dir), Path(dataset_dir)
    transcriber = Transcriber(model_dir, max_batch_seconds=max_batch_seconds, decoding=decoding)
    loaded = load_scoring_split(
        dataset_dir, split, transcriber.feature_extractor, transcriber.folder.architecture, limit, "evaluate"
    )
    dataset, manifest = loaded.dataset, loaded.manifest
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
    tone = transcriber.folder.tone_placement
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
        "split": loaded.name,
        "architecture": transcriber.folder.architecture,
        "decoding": transcriber.decoding.to_dict(),
        "features": "precomputed (dataset)" if stores_features(dataset) else "computed from the dataset's audio",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out = Path(output_dir) if output_dir else default_output_dir(model_dir, split, transcriber.decoding)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_NAME).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    predictions = [
        {"id": uid, "reference": ref, "hypothesis": hyp, "duration": duration, "confidence": confidence}
        | utterance_error_rates(ref, hyp, tone)
        for uid, ref, hyp, duration, confidence in zip(dataset["id"], references, hypotheses, durations, confidences)
    ]
    _write_predictions(out / PREDICTIONS_NAME, predictions)
    if html:
        write_html_report(metrics, predictions, out / HTML_NAME)
    return EvalResult(metrics=metrics, output_dir=out)
