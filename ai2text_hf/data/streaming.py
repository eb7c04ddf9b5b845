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
import numpy as np
import torch

from ..feature_extraction_ai2text import AI2TextFeatureExtractor
from .sampler import DurationBatchSampler
from .sources import read_csv_source
from .validation import (
    INTERNAL_COLUMNS,
    Checks,
    check_split,
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
    store: str = "features",
) -> datasets.IterableDataset:
    """Rows of ``csv_path`` (only ``split``'s when given) that pass every check, with ``input_features``
    (``store="audio"``: the 16 kHz ``audio`` instead, for features computed in the collator after augmentation).

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
        absolute_ok=source.absolute_ok,
        extra_columns=source.extra_columns,
    )
    if split is not None:
        split = check_split(split)[0]  # "val" finds the rows of "validation", as in a prepared version
        records = [record for record in records if record["split"] == split]
    if not records:
        raise ValueError(f"{csv_path} has no rows" + (f" in split {split!r}" if split else "") + ": nothing to stream.")
    extras = [extra_column_name(name) for name in source.extra_columns]
    output = datasets.Features(
        {**dataset_features(feature_extractor.feature_dim, store, extras), **internal_features()}
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
                "store": store,
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


class BucketedStream(torch.utils.data.IterableDataset):
    """Duration-bucketed batches from a stream of rows whose total length is unknown.

    Fills a buffer of ``buffer_size`` rows, packs it like ``DurationBatchSampler`` (sorted by duration bucket,
    cut at ``max_batch_seconds`` of padded audio, batch order shuffled) and yields its batches, then the next
    buffer's. Padding stays near the sampler's when the buffer holds a few batches' worth of each length;
    shuffling across buffers is the stream's own (``IterableDataset.shuffle``). Yields lists of rows, so the
    ``DataLoader`` takes ``batch_size=None`` and the collator as ``collate_fn``.
    """

    def __init__(
        self,
        stream: datasets.IterableDataset,
        max_batch_seconds: float,
        max_batch_size: int | None = None,
        buffer_size: int = 1000,
        seed: int = 0,
    ):
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
        self.stream = stream
        self.max_batch_seconds = max_batch_seconds
        self.max_batch_size = max_batch_size
        self.buffer_size = buffer_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called each epoch (accelerate's loader forwards it): new batch order, and a new stream shuffle."""
        self.epoch = epoch
        self.stream.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[dict]]:
        buffer: list[dict] = []
        chunk = 0
        for row in self.stream:
            buffer.append(row)
            if len(buffer) == self.buffer_size:
                yield from self._pack(buffer, chunk)
                buffer, chunk = [], chunk + 1
        if buffer:
            yield from self._pack(buffer, chunk)

    def _pack(self, rows: list[dict], chunk: int) -> Iterator[list[dict]]:
        seed = int(np.random.SeedSequence([self.seed, self.epoch, chunk]).generate_state(1)[0])
        sampler = DurationBatchSampler(
            [row["duration"] for row in rows], self.max_batch_seconds, self.max_batch_size, shuffle=True, seed=seed
        )
        for batch in sampler:
            yield [rows[index] for index in batch]
