"""Duration-bucketed dynamic batches: little padding, a bounded amount of audio per step."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class DurationBatchSampler(Sampler[list[int]]):
    """Yields lists of indices whose *padded* duration stays under ``max_batch_seconds``.

    Utterances are sorted by duration bucket (``bucket_seconds`` wide) and randomly within a bucket,
    so batch composition changes between epochs while padding stays near the bucket width; they are
    cut greedily into batches and the batch order is shuffled. Sorting keeps
    utterances of similar length together, which is what keeps padding — wasted compute — low.
    Everything derives from ``(seed, epoch)``, so a resumed run rebuilds exactly the same batches.

    Args:
        durations: seconds per dataset row.
        max_batch_seconds: cap on ``longest utterance × batch size``.
        max_batch_size: optional cap on utterances per batch.
        shuffle: shuffle batch order (and jitter the sort) each epoch; off for evaluation.
        seed: base seed.
        bucket_seconds: width of the duration buckets whose members are shuffled together.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        bucket_seconds: float = 0.1,
    ):
        if max_batch_seconds <= 0:
            raise ValueError(f"max_batch_seconds must be positive, got {max_batch_seconds}")
        self.durations = np.asarray(durations, dtype=np.float64)
        longest = float(self.durations.max()) if len(self.durations) else 0.0
        if longest > max_batch_seconds:
            raise ValueError(
                f"The longest utterance lasts {longest:.1f} s, more than max_batch_seconds={max_batch_seconds}: "
                "raise max_batch_seconds or filter long utterances when preparing the data."
            )
        self.max_batch_seconds = max_batch_seconds
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_seconds = bucket_seconds
        self.epoch = 0
        self._batches = self._build(0)

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer at the start of each epoch."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._batches = self._build(epoch)

    def _build(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        if self.shuffle:
            keys = np.floor(self.durations / self.bucket_seconds) + rng.random(len(self.durations))
        else:
            keys = self.durations
        order = np.argsort(keys, kind="stable")
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0.0
        for index in order.tolist():
            duration = self.durations[index]
            candidate = max(longest, duration)
            too_long = candidate * (len(current) + 1) > self.max_batch_seconds
            too_many = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (too_long or too_many):
                batches.append(current)
                current, candidate = [], duration
            current.append(index)
            longest = candidate
        if current:
            batches.append(current)
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def padding_share(self) -> float:
        """Share of the padded audio in the current epoch's batches that is padding."""
        total = sum(float(self.durations[b].max()) * len(b) for b in self._batches)
        real = float(self.durations.sum())
        return 0.0 if total == 0 else 1.0 - real / total
