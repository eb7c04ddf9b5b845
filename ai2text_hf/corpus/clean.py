"""``ai2text clean``: score every row of a metadata CSV with a model and keep those that pass thresholds.

``ai2text doctor`` ranks a prepared dataset for a person to review; ``clean`` ends in a corpus: it reads the
metadata CSV itself, so ``ai2text prepare`` can take the filtered CSV next and retraining is one more
command. A row is dropped, with every reason written to the report, when:

* its audio is missing or unreadable, its transcript is empty or spelled with characters the model lacks;
* its CTC loss per label character is far above the rest (by default: above the median plus ``spread`` times
  the median absolute deviation, and above a floor, so a clean corpus loses little; or above a fixed value
  given by the user);
* the CER of the model's transcript against it is far above the rest (the same rule) *and* its forced-alignment
  score is below ``min_align_score``. Either alone drops a row only with ``strict``: both read the model's single
  best path, so a clean row the model mishears crosses one of them, while the loss weighs every path;
* it has more characters per second than anyone speaks (``max_chars_per_second``) or, with a ``duration``
  column, its declared duration differs from the audio's by more than ``max_duration_mismatch`` seconds.

Nothing is deleted: the input CSV stays as it is, the kept rows go to a new CSV (refused if it exists).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.audio import AudioDecodeError, load_audio
from ..data.sources import read_metadata
from ..metrics import utterance_error_rates
from .align import Aligner
from .options import CleanOptions
from .text import label_ids, prepare_text


@dataclass
class RowScore:
    """One row's measurements; ``problem`` is set when it could not be scored at all."""

    line: int
    file_path: str
    transcript: str
    duration: float = 0.0
    loss_per_char: float = math.inf
    cer: float = 1.0
    align_score: float = 0.0
    chars_per_second: float = 0.0
    duration_mismatch: float = 0.0
    hypothesis: str = ""
    problem: str = ""


@dataclass
class CleanResult:
    kept: Path
    report: Path
    scores: list[RowScore]
    reasons: dict[int, list[str]]  # CSV line -> why dropped
    thresholds: dict[str, float]

    def summary(self) -> str:
        dropped = len(self.reasons)
        counts: dict[str, int] = {}
        for reasons in self.reasons.values():
            for reason in reasons:
                key = reason.split(":")[0].split(" (")[0]
                counts[key] = counts.get(key, 0) + 1
        lines = [f"Kept {len(self.scores) - dropped} of {len(self.scores)} rows -> {self.kept}"]
        lines += [f"  dropped {n:5d}: {key}" for key, n in sorted(counts.items(), key=lambda kv: -kv[1])]
        lines.append(f"Every dropped row and why: {self.report}")
        return "\n".join(lines)


def score_rows(aligner: Aligner, csv_path: Path, audio_root: Path | None, options: CleanOptions) -> list[RowScore]:
    """Every row of the CSV scored (rows that cannot be scored carry a ``problem``)."""
    rows, _, lines = read_metadata(csv_path)
    root = audio_root or csv_path.parent
    scores: list[RowScore] = []
    for start in range(0, len(rows), options.batch_rows):
        block = list(zip(rows[start : start + options.batch_rows], lines[start : start + options.batch_rows]))
        scores += _score_block(aligner, block, root)
    return scores


def _score_block(aligner: Aligner, block: Sequence[tuple[dict, int]], root: Path) -> list[RowScore]:
    scores, waves = [], []
    for row, line in block:
        score = RowScore(line, str(row.get("file_path") or ""), str(row.get("transcript") or ""))
        scores.append(score)
        text = prepare_text(score.transcript, aligner.tone_placement)
        score.problem = aligner.check(text) or ""
        if not score.file_path:
            score.problem = "no file_path"
        if score.problem:
            continue
        try:
            wave = load_audio(root / score.file_path, aligner.sampling_rate)[0]
        except (AudioDecodeError, OSError) as error:
            score.problem = str(error)
            continue
        score.duration = len(wave) / aligner.sampling_rate
        declared = row.get("duration")
        if declared:
            try:
                score.duration_mismatch = abs(float(declared) - score.duration)
            except ValueError:
                score.problem = f"duration {declared!r} is not a number"
                continue
        waves.append((score, wave))
    emissions = aligner.emissions([w for _, w in waves])
    for (score, _), emission in zip(waves, emissions):
        _measure(aligner, score, emission)
    return scores


def _measure(aligner: Aligner, score: RowScore, emission: torch.Tensor) -> None:
    text = prepare_text(score.transcript, aligner.tone_placement)
    ids, _ = label_ids(text, aligner.tokenizer)
    loss = F.ctc_loss(
        emission[:, None],
        torch.tensor([ids]),
        torch.tensor([emission.shape[0]]),
        torch.tensor([len(ids)]),
        blank=aligner.blank,
        reduction="sum",
    )
    score.loss_per_char = float(loss) / len(ids)
    score.hypothesis = aligner.tokenizer.decode(emission.argmax(-1).tolist())
    score.cer = utterance_error_rates(text.normalized, score.hypothesis, aligner.tone_placement)["cer"]
    alignment = aligner.align_emission(emission, score.transcript, score.file_path, score.duration)
    score.align_score = alignment.score
    score.chars_per_second = len(text.normalized.replace(" ", "")) / max(score.duration, 1e-3)
    if alignment.error:
        score.problem = alignment.error


def thresholds(scores: Sequence[RowScore], options: CleanOptions) -> dict[str, float]:
    """The thresholds applied: the user's, or outliers of the rows that could be scored."""
    scored = [s for s in scores if not s.problem]

    def outlier(values: list[float], floor: float) -> float:
        finite = np.asarray([v for v in values if math.isfinite(v)])
        if not len(finite):
            return floor
        median = float(np.median(finite))
        mad = float(np.median(np.abs(finite - median)))
        return max(floor, median + options.spread * mad)

    loss, cer = options.max_loss_per_char, options.max_cer
    return {
        "max_loss_per_char": loss
        if loss is not None
        else outlier([s.loss_per_char for s in scored], options.min_loss_per_char),
        "max_cer": cer if cer is not None else outlier([s.cer for s in scored], options.min_cer),
        "min_align_score": options.min_align_score,
        "max_chars_per_second": options.max_chars_per_second,
        "max_duration_mismatch": options.max_duration_mismatch,
    }


# Thresholds on the model's best path: without ``strict``, one of them alone does not drop a row.
_BEST_PATH = ("max_cer", "min_align_score")


def reasons_for(score: RowScore, limits: dict[str, float], strict: bool) -> list[str]:
    """Why a row is dropped (empty: kept); ``strict``: any crossed threshold drops it (see the module docstring)."""
    if score.problem:
        return [score.problem]
    checks = [  # (value, limit key, description); "min_" limits are lower bounds
        (score.loss_per_char, "max_loss_per_char", "loss per character"),
        (score.cer, "max_cer", "CER against the model's transcript"),
        (score.align_score, "min_align_score", "alignment score"),
        (score.chars_per_second, "max_chars_per_second", "characters per second"),
        (score.duration_mismatch, "max_duration_mismatch", "declared duration differs from the audio by (s)"),
    ]
    reasons, crossed = [], []
    for value, key, description in checks:
        low = key.startswith("min_")
        if (value < limits[key]) if low else (value > limits[key]):
            reasons.append(f"{description} {value:.3f} {'<' if low else '>'} {limits[key]:.3f}")
            crossed.append(key)
    return reasons if strict or len(crossed) != 1 or crossed[0] not in _BEST_PATH else []


def clean_metadata(
    aligner: Aligner,
    csv_path: str | os.PathLike,
    output: str | os.PathLike | None = None,
    audio_root: str | os.PathLike | None = None,
    options: CleanOptions | None = None,
) -> CleanResult:
    """Score ``csv_path``, write the kept rows to ``output`` (default ``<name>.clean.csv`` beside it, file
    paths rewritten so they still resolve) and ``<output stem>.dropped.csv`` with every dropped row and why."""
    options = options or CleanOptions()
    csv_path = Path(csv_path)
    output = Path(output) if output else csv_path.with_name(f"{csv_path.stem}.clean.csv")
    report = output.with_name(f"{output.stem}.dropped.csv")
    for path in (output, report):
        if path.exists():
            raise FileExistsError(f"{path} already exists: give another --output or remove it first.")
    if output.resolve() == csv_path.resolve():
        raise ValueError("--output is the input CSV: clean never overwrites its input.")
    root = Path(audio_root) if audio_root else csv_path.parent
    scores = score_rows(aligner, csv_path, root, options)
    limits = thresholds(scores, options)
    reasons = {s.line: r for s in scores if (r := reasons_for(s, limits, options.strict))}
    rows, header, lines = read_metadata(csv_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        for row, line in zip(rows, lines):
            if line not in reasons:
                writer.writerow({**row, "file_path": _relocate(str(row.get("file_path") or ""), root, output.parent)})
    with open(report, "w", encoding="utf-8", newline="") as handle:
        fields = ["line", "reasons", *[k for k in asdict(scores[0]) if k not in ("line", "problem")]]
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for score in scores:
            if score.line in reasons:
                writer.writerow({**_rounded(asdict(score)), "reasons": "; ".join(reasons[score.line])})
    return CleanResult(output, report, scores, reasons, limits)


def _relocate(file_path: str, root: Path, folder: Path) -> str:
    """``file_path`` (relative to ``root``) as seen from ``folder``; absolute paths stay as they are."""
    if not file_path or os.path.isabs(file_path) or root.resolve() == folder.resolve():
        return file_path
    return os.path.relpath(root / file_path, folder)


def _rounded(values: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) and math.isfinite(v) else v for k, v in values.items()}
