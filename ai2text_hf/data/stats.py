"""Statistics of a prepared dataset version: what ``stats.json`` holds and ``ai2text stats`` prints.

The old system's "Verify Data" step, on our API::

    from ai2text_hf.data import dataset_statistics

    stats = dataset_statistics("data/processed/v1")
    print("Dataset Statistics:")
    print(f"Train: {stats.get('train_files', 0)} files")
    print(f"Validation: {stats.get('validation_files', 0)} files")
    print(f"Test: {stats.get('test_files', 0)} files")

Keys are flat (``<split>_<name>``) so dashboards and shell tools read them without nesting. Per split:
``files``, ``hours``, ``speakers``, ``mean/min/max_duration`` (s), ``chars_per_second`` (label characters,
spaces included, per second of audio: what CTC must emit), ``alphabet_coverage`` (share of the 93-letter
Vietnamese alphabet that occurs) and, for validation/test, ``vocab_coverage`` (share of their running syllables
that also occur in train: a low value means the test measures words the model never heard).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from ..normalization_vi import VIETNAMESE_ALPHABET
from .validation import SPLITS
from .versions import load_prepared, read_manifest

#: Columns the statistics read (never the features).
STAT_COLUMNS = ("duration", "text", "speaker_id")
_ALPHABET = frozenset(VIETNAMESE_ALPHABET)


def compute_statistics(splits: Mapping[str, Mapping[str, Sequence]]) -> dict[str, int | float]:
    """Flat statistics from each split's ``duration``, ``text`` and ``speaker_id`` values."""
    train_words = {word for text in splits["train"]["text"] for word in text.split()}
    stats: dict[str, int | float] = {}
    for split in SPLITS:
        columns = splits[split]
        durations = np.asarray(columns["duration"], dtype=np.float64)
        seconds = float(durations.sum())
        texts = list(columns["text"])
        stats[f"{split}_files"] = len(durations)
        stats[f"{split}_hours"] = round(seconds / 3600, 6)
        stats[f"{split}_speakers"] = len(set(columns["speaker_id"]) - {""})
        stats[f"{split}_mean_duration"] = round(float(durations.mean()), 3) if len(durations) else 0.0
        stats[f"{split}_min_duration"] = round(float(durations.min()), 3) if len(durations) else 0.0
        stats[f"{split}_max_duration"] = round(float(durations.max()), 3) if len(durations) else 0.0
        stats[f"{split}_chars_per_second"] = round(sum(map(len, texts)) / seconds, 2) if seconds else 0.0
        letters = set().union(*map(set, texts)) & _ALPHABET if texts else set()
        stats[f"{split}_alphabet_coverage"] = round(len(letters) / len(_ALPHABET), 4)
        if split != "train":
            words = [word for text in texts for word in text.split()]
            seen = sum(word in train_words for word in words)
            stats[f"{split}_vocab_coverage"] = round(seen / len(words), 4) if words else 0.0
    stats["total_files"] = sum(int(stats[f"{split}_files"]) for split in SPLITS)
    stats["total_hours"] = round(sum(float(stats[f"{split}_hours"]) for split in SPLITS), 6)
    return stats


def dataset_statistics(path: str | os.PathLike) -> dict[str, int | float]:
    """Statistics of the prepared version at ``path``, computed from its data (plus ``skipped_rows``)."""
    manifest = read_manifest(path)
    data = load_prepared(path)
    stats = compute_statistics({split: data[split].select_columns(list(STAT_COLUMNS)).to_dict() for split in SPLITS})
    stats["skipped_rows"] = manifest["counts"]["skipped"]
    return stats


def format_statistics(stats: Mapping[str, int | float]) -> str:
    """A per-split table for the terminal."""
    columns = [
        ("files", "files", "{:>9}"),
        ("hours", "hours", "{:>9.3f}"),
        ("speakers", "speakers", "{:>9}"),
        ("mean s", "mean_duration", "{:>9.2f}"),
        ("min s", "min_duration", "{:>9.2f}"),
        ("max s", "max_duration", "{:>9.2f}"),
        ("chars/s", "chars_per_second", "{:>9.1f}"),
        ("alphabet", "alphabet_coverage", "{:>9.1%}"),
        ("in train", "vocab_coverage", "{:>9.1%}"),
    ]
    lines = [f"{'split':<11}" + "".join(f"{title:>9}" for title, _, _ in columns)]
    for split in SPLITS:
        cells = [
            fmt.format(stats[f"{split}_{key}"]) if f"{split}_{key}" in stats else f"{'-':>9}" for _, key, fmt in columns
        ]
        lines.append(f"{split:<11}" + "".join(cells))
    lines.append(
        f"total: {stats['total_files']} files, {stats['total_hours']:.3f} hours"
        + (f"; {stats['skipped_rows']} input rows skipped" if "skipped_rows" in stats else "")
    )
    lines.append("alphabet = share of the 93 Vietnamese letters present; in train = share of syllables seen in train")
    return "\n".join(lines)
