"""The terminal evaluation report, laid out like the old system's, and evaluation files lookup."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS_NAME = "eval_results.json"


def load_results(path: str | Path) -> dict:
    """An ``eval_results.json``, given as the file or the folder holding it."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"No evaluation results at {path}: run `ai2text evaluate` first.")
    return json.loads(path.read_text(encoding="utf-8"))


def percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def decoding_line(decoding: dict) -> str:
    """``greedy`` or ``beam 10, LM lm/vi3 (weight 0.5), hotwords names.txt``."""
    if decoding.get("method") != "beam":
        return "greedy"
    parts = [f"beam {decoding['beam_width']}"]
    if decoding.get("lm"):
        parts.append(f"LM {decoding['lm']} (weight {decoding['lm_weight']}, word score {decoding['word_score']})")
    if decoding.get("hotwords"):
        parts.append(f"hotwords {decoding['hotwords']} (weight {decoding['hotword_weight']})")
    return ", ".join(parts)


def _tree(lines: list[str]) -> list[str]:
    return [("└── " if i == len(lines) - 1 else "├── ") + line for i, line in enumerate(lines)]


def error_phrase(error: dict) -> str:
    """``"việt nam" → "viêt nam"``, with ∅ for a deleted or inserted side."""
    return f'"{error["reference"] or "∅"}" → "{error["hypothesis"] or "∅"}"'


def format_report(metrics: dict, top: int = 10) -> str:
    """The old system's "Evaluation Results" block, plus tone errors, sentence accuracy and per-speaker rates."""
    split = str(metrics.get("split", "test")).capitalize()
    lines = [
        "Evaluation Results:",
        "==================",
        f"{split} Set: {metrics['num_samples']} samples",
        f"Duration: {metrics['hours']:.2f} hours",
        f"Decoding: {decoding_line(metrics.get('decoding', {}))}",
        "",
        "Metrics:",
        *_tree(
            [
                f"Word Error Rate (WER, syllables): {percent(metrics['wer'])}",
                f"Character Error Rate (CER): {percent(metrics['cer'])}",
                f"Accuracy (1 - WER): {percent(metrics['accuracy'])}",
                f"Sentence Accuracy: {percent(metrics['sentence_accuracy'])}",
                f"Tone/Diacritic Error Rate: {percent(metrics['tone_error_rate'])} "
                f"({percent(metrics['tone_error_share'])} of errors)",
                f"Processing Speed: {metrics['rtf']:.4f}x realtime",
            ]
        ),
        "",
        "Error Analysis:",
        *_tree(
            [
                f"Substitutions: {percent(metrics['substitutions'])}",
                f"Deletions: {percent(metrics['deletions'])}",
                f"Insertions: {percent(metrics['insertions'])}",
            ]
        ),
    ]
    if metrics.get("top_errors"):
        lines += ["", "Top Errors:"]
        lines += [
            f"{i}. {error_phrase(e)} ({e['count']} occurrence{'s' if e['count'] != 1 else ''})"
            for i, e in enumerate(metrics["top_errors"][:top], start=1)
        ]
    speakers = sorted((metrics.get("per_speaker") or {}).items(), key=lambda item: -item[1]["wer"])
    if speakers:
        lines += ["", "Per Speaker (worst first):"]
        shown = [
            f"{name}: WER {percent(s['wer'])}, CER {percent(s['cer'])} ({s['num_samples']} samples)"
            for name, s in speakers[:top]
        ]
        if len(speakers) > top:
            shown.append(f"... {len(speakers) - top} more in eval_results.json")
        lines += _tree(shown)
    return "\n".join(lines)
