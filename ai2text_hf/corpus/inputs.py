"""What ``ai2text align`` reads: one audio file and its text, a metadata CSV, or a prepared dataset split."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..data.sources import read_metadata
from ..data.versions import load_prepared, resolve_split
from .align import AlignItem


def items_from_csv(csv_path: str | os.PathLike, audio_root: str | os.PathLike | None = None) -> Iterator[AlignItem]:
    """One item per row (``file_path`` relative to ``audio_root``, by default the CSV's folder); the item is
    named after its file."""
    csv_path = Path(csv_path)
    root = Path(audio_root) if audio_root else csv_path.parent
    rows, _, lines = read_metadata(csv_path)
    for row, line in zip(rows, lines):
        file_path = str(row.get("file_path") or "")
        name = Path(file_path).stem or f"line-{line}"
        yield AlignItem(name=name, transcript=str(row.get("transcript") or ""), path=root / file_path)


def items_from_dataset(dataset_dir: str | os.PathLike, split: str) -> Iterator[AlignItem]:
    """One item per row of a prepared split: its stored 16 kHz audio, or its source file when the version
    stores features only."""
    data = load_prepared(dataset_dir)
    part = data[resolve_split(data, split)]
    columns = [c for c in ("id", "transcript", "file_path", "audio") if c in part.column_names]
    for row in part.select_columns(columns):
        audio = row.get("audio")
        yield AlignItem(
            name=str(row.get("id") or Path(str(row.get("file_path"))).stem),
            transcript=str(row.get("transcript") or ""),
            path=None if audio is not None else Path(str(row["file_path"])),
            waveform=np.asarray(audio, dtype=np.float32) if audio is not None else None,
        )
