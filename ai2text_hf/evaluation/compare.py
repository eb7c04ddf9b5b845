"""Two evaluations side by side: the old system's checklist step "compare with baseline"."""

from __future__ import annotations

from pathlib import Path

from .report import decoding_line, load_results, percent

MAX_SPEAKER_ROWS = 15  # more speakers in common are summarised in one row

# (key, label, lower is better); rates are fractions shown as percentages.
RATE_ROWS = [
    ("wer", "WER (syllables)", True),
    ("cer", "CER", True),
    ("accuracy", "Accuracy", False),
    ("sentence_accuracy", "Sentence accuracy", False),
    ("tone_error_rate", "Tone/diacritic error rate", True),
    ("tone_error_share", "Tone/diacritic share of errors", True),
    ("substitutions", "Substitutions (share)", True),
    ("deletions", "Deletions (share)", True),
    ("insertions", "Insertions (share)", True),
    ("mean_confidence", "Mean confidence", False),
]


def _change(a: float, b: float, lower_is_better: bool) -> str:
    delta = 100 * (b - a)
    if abs(delta) < 0.005:
        return "="
    better = (delta < 0) == lower_is_better
    return f"{delta:+.2f} pts {'better' if better else 'worse'}"


def format_comparison(a: dict, b: dict, label_a: str = "A", label_b: str = "B") -> str:
    """A table of B against A (the baseline), with a warning when they did not score the same data."""
    rows = [
        ("Model", a.get("model", "?"), b.get("model", "?"), ""),
        (
            "Data",
            f"{a.get('dataset', '?')} [{a.get('split', '?')}]",
            f"{b.get('dataset', '?')} [{b.get('split', '?')}]",
            "",
        ),
        ("Decoding", decoding_line(a.get("decoding", {})), decoding_line(b.get("decoding", {})), ""),
        ("Samples", str(a.get("num_samples")), str(b.get("num_samples")), ""),
    ]
    for key, label, lower in RATE_ROWS:
        if key in a and key in b:
            rows.append((label, percent(a[key]), percent(b[key]), _change(a[key], b[key], lower)))
    if "rtf" in a and "rtf" in b:
        speed = a["rtf"] / b["rtf"] if b["rtf"] else float("inf")
        rows.append(("Real-time factor", f"{a['rtf']:.4f}", f"{b['rtf']:.4f}", f"{speed:.2f}x the speed"))
    speakers_a, speakers_b = a.get("per_speaker") or {}, b.get("per_speaker") or {}
    common = sorted(set(speakers_a) & set(speakers_b))
    changes = [(name, speakers_a[name]["wer"], speakers_b[name]["wer"]) for name in common]
    if len(common) <= MAX_SPEAKER_ROWS:
        rows += [(f"WER {name}", percent(wa), percent(wb), _change(wa, wb, True)) for name, wa, wb in changes]
    else:
        better = sum(wb < wa for _, wa, wb in changes)
        worse = sum(wb > wa for _, wa, wb in changes)
        rows.append(("Speakers (WER)", f"{len(common)} in both", "", f"{better} better, {worse} worse"))
    header = ("", label_a, label_b, "Change")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(4)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    same_data = (a.get("data_version"), a.get("split"), a.get("num_samples")) == (
        b.get("data_version"),
        b.get("split"),
        b.get("num_samples"),
    )
    if not same_data:
        lines.append("\nWarning: the two evaluations scored different data; the numbers are not directly comparable.")
    return "\n".join(lines)


def compare_files(path_a: str | Path, path_b: str | Path) -> str:
    """:func:`format_comparison` of two ``eval_results.json`` files (or the folders holding them)."""
    return format_comparison(load_results(path_a), load_results(path_b), f"A: {path_a}", f"B: {path_b}")
