"""A metadata CSV read as a streamed ``IterableDataset``: for corpora that are never materialised.

Rows pass the same checks as in ``prepare_dataset`` and get the same features (``process_batch``), computed
lazily batch by batch while iterating, so nothing is written to disk and memory stays at one batch. A row
that fails a check is dropped from the stream; run ``ai2text prepare --validate-only`` on the CSV for the
report of why. What streaming cannot do is anything that needs the whole corpus first: duplicate-audio
detection and the auto-split (use the CSV's split column).

A trainer reads it like any ``IterableDataset`` (``shuffle(buffer_size=...)``, ``DataLoader`` workers
split its shards); its rows carry ``duration`` for length-aware batching.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import datasets

from ..feature_extraction_ai2text import AI2TextFeatureExtractor
from .sources import read_csv_source
from .validation import (
    INTERNAL_COLUMNS,
    Checks,
    dataset_features,
    extra_column_name,
    internal_features,
    process_batch,
    screen_rows,
)


def stream_dataset(
    csv_path: str | os.PathLike,
    *,
    split: str | None = None,
    audio_root: str | os.PathLike | None = None,
    feature_extractor: AI2TextFeatureExtractor | None = None,
    tone_placement: str = "classic",
    allow_outside_root: bool = False,
    checks: Checks | None = None,
    batch_size: int = 16,
    num_shards: int = 8,
) -> datasets.IterableDataset:
    """Rows of ``csv_path`` (only ``split``'s when given) that pass every check, with ``input_features``.

    ``num_shards`` lets ``DataLoader`` workers (or ``split_dataset_by_node``) read disjoint parts.
    """
    csv_path = Path(csv_path).absolute()
    feature_extractor = feature_extractor or AI2TextFeatureExtractor()
    checks = checks or Checks()
    source, _ = read_csv_source(csv_path, Path(audio_root).absolute() if audio_root else None)
    records = screen_rows(
        source.rows,
        root=source.root,
        tone_placement=tone_placement,
        allow_outside_root=allow_outside_root,
        extra_columns=source.extra_columns,
    )
    if split is not None:
        records = [record for record in records if record["split"] == split]
    if not records:
        raise ValueError(f"{csv_path} has no rows" + (f" in split {split!r}" if split else "") + ": nothing to stream.")
    extras = [extra_column_name(name) for name in source.extra_columns]
    output = datasets.Features(
        {**dataset_features(feature_extractor.feature_size, "features", extras), **internal_features()}
    )
    shards = [records[i::num_shards] for i in range(min(num_shards, len(records)))]
    stream = datasets.IterableDataset.from_generator(
        _rows,
        gen_kwargs={"shards": shards},
        features=datasets.Features({key: output[key] for key in records[0]}),
    )
    return (
        stream.map(
            process_batch,
            batched=True,
            batch_size=batch_size,
            fn_kwargs={
                "feature_extractor": feature_extractor,
                "checks": checks,
                "store": "features",
                "worker_threads": None,
            },
            features=output,
        )
        .filter(lambda reasons: not reasons, input_columns=["_reasons"])
        .remove_columns(list(INTERNAL_COLUMNS))
    )


def _rows(shards: list[list[dict]]) -> Iterator[dict]:
    for shard in shards:
        yield from shard
