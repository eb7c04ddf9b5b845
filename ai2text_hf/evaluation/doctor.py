"""``ai2text doctor``: rank utterances by how badly a trained model disagrees with their transcripts.

A few rows whose audio does not match their transcript (a shifted CSV, a swapped file) are the most
damaging data error and invisible to every format check. A trained model exposes them: on such a row its
per-utterance CTC loss per label character is far above the rest, and its greedy transcript shares little
with the reference (high CER). The ranking is for a person to review (the old system's "verify audio and
transcripts match"), worst first; it never edits the data. Loss per character, not total loss, so long
utterances do not rank high just for being long; an impossible alignment (more labels than frames) is
``inf`` and ranks first.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data.loading import load_scoring_split
from ..data.versions import load_prepared
from ..inference import Transcriber, duration_batches
from ..metrics import utterance_error_rates

SORT_KEYS = ("loss", "cer")


@dataclass(frozen=True)
class Suspect:
    """One utterance's disagreement with its transcript (higher = more suspicious)."""

    id: str
    split: str
    file_path: str
    duration: float
    loss_per_char: float  # CTC loss (nats) / label length
    cer: float  # of the greedy transcript against the reference
    text: str  # the reference, normalised
    hypothesis: str


def diagnose(
    model_dir: str | Path,
    dataset_dir: str | Path,
    splits: Sequence[str] | None = None,
    sort_by: str = "loss",
    limit: int | None = None,
    max_batch_seconds: float = 120.0,
    device: str | None = None,
) -> list[Suspect]:
    """Every utterance of ``splits`` (default: all) scored by ``model_dir``, worst first by ``sort_by``."""
    if sort_by not in SORT_KEYS:
        raise ValueError(f"sort_by must be one of {SORT_KEYS}, not {sort_by!r}.")
    transcriber = Transcriber(model_dir, device=device, max_batch_seconds=max_batch_seconds)
    # Every split is opened (and checked) before any is scored; by default the non-empty ones.
    names = splits or [name for name, rows in load_prepared(dataset_dir).items() if len(rows)]
    loaded = [
        load_scoring_split(
            dataset_dir, name, transcriber.feature_extractor, transcriber.folder.architecture, limit, "diagnose"
        )
        for name in names
    ]
    suspects = [suspect for part in loaded for suspect in _score_split(transcriber, part.dataset, part.name)]
    key = (lambda s: s.loss_per_char) if sort_by == "loss" else (lambda s: s.cer)
    return sorted(suspects, key=lambda s: (-key(s), s.id))


@torch.inference_mode()
def _score_split(transcriber: Transcriber, dataset, split: str) -> list[Suspect]:
    tokenizer = transcriber.tokenizer
    durations = [float(d) for d in dataset["duration"]]
    suspects = []
    for batch in duration_batches(durations, transcriber.max_batch_seconds):
        rows = dataset[batch]
        logits, out_lengths = transcriber.logits(rows["input_features"])
        logits = logits.float().cpu()
        labels = tokenizer(list(rows["text"]))["input_ids"]
        losses = F.ctc_loss(
            F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1),
            torch.tensor([i for ids in labels for i in ids], dtype=torch.long),
            out_lengths,
            torch.tensor([len(ids) for ids in labels]),
            blank=tokenizer.pad_token_id,
            reduction="none",
        ).cpu()
        best = logits.argmax(-1).cpu()
        for j, index in enumerate(batch):
            hypothesis = tokenizer.decode(best[j, : out_lengths[j]].tolist())
            text = str(rows["text"][j])
            suspects.append(
                Suspect(
                    id=str(rows["id"][j]),
                    split=split,
                    file_path=str(rows["file_path"][j]),
                    duration=durations[index],
                    loss_per_char=float(losses[j]) / max(1, len(labels[j])),
                    cer=utterance_error_rates(text, hypothesis, transcriber.folder.tone_placement)["cer"],
                    text=text,
                    hypothesis=hypothesis,
                )
            )
    return suspects


def write_suspects(suspects: Sequence[Suspect], path: str | Path) -> Path:
    """All scored utterances as CSV, worst first, with a ``rank`` column (1 = most suspicious)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["rank", *asdict(suspects[0])] if suspects else ["rank"])
        writer.writeheader()
        for rank, suspect in enumerate(suspects, start=1):
            writer.writerow({"rank": rank, **asdict(suspect)})
    return path


def format_suspects(suspects: Sequence[Suspect], top: int) -> str:
    """The ``top`` most suspicious utterances as a terminal table."""
    lines = [f"{'rank':>4}  {'loss/char':>9}  {'CER':>6}  {'split':<5}  id / reference / model heard"]
    for rank, s in enumerate(suspects[:top], start=1):
        loss = "inf" if math.isinf(s.loss_per_char) else f"{s.loss_per_char:.3f}"
        lines.append(f"{rank:>4}  {loss:>9}  {s.cer:>6.1%}  {s.split:<5}  {s.id}")
        lines.append(f"{'':>33}ref: {s.text}")
        lines.append(f"{'':>33}hyp: {s.hypothesis}")
    return "\n".join(lines)
