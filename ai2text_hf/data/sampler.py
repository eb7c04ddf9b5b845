"""Duration-bucketed dynamic batches: little padding, a bounded amount of audio per step."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class DurationBatchSampler(Sampler[list[int]]):
    """Yields lists of indices whose *padded* duration stays under ``max_batch_seconds``.

    Utterances are sorted by duration bucket (``bucket_seconds`` wide) and randomly within a bucket,
    so batch composition changes between epochs while padding stays near the bucket width; the batch
    order is shuffled. Sorting keeps utterances of similar length together, which is what keeps
    padding — wasted compute — low.

    The cut points are computed once, from each position's *bucket maximum* (the sorted sequence of
    buckets is the same every epoch), so every epoch has the same number of batches of the same sizes:
    the Trainer's step and epoch accounting (``global_step // steps_per_epoch``) stays exact, and a
    resumed run finds its position in the epoch from the step count alone. Everything derives from
    ``(seed, epoch)``, so a resumed run rebuilds exactly the same batches.

    Distributed: the *global* batch list does not depend on the number of processes. Process ``rank``
    of ``num_replicas`` takes global batches ``rank, rank + num_replicas, ...``, so one optimizer step
    of N processes × accumulation A covers the same utterances as 1 process × accumulation N·A. When
    the batch count is no multiple of N, the last batches are halved until it is (same utterances,
    smaller batches), so every process gets as many batches and no utterance is repeated.

    Args:
        durations: seconds per dataset row.
        max_batch_seconds: cap on ``longest utterance × batch size``.
        max_batch_size: optional cap on utterances per batch.
        shuffle: shuffle batch order (and the order within buckets) each epoch; off for evaluation.
        seed: base seed.
        bucket_seconds: width of the duration buckets whose members are shuffled together.
        num_replicas: number of processes sharing the batches (the world size).
        rank: this process's index.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        bucket_seconds: float = 0.1,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if max_batch_seconds <= 0:
            raise ValueError(f"max_batch_seconds must be positive, got {max_batch_seconds}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
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
        self.num_replicas = num_replicas
        self.rank = rank
        self._buckets = np.floor(self.durations / bucket_seconds)
        self._cuts = self._cut_points()
        self.epoch = 0
        self._global = self._build(0)
        self._batches = self._shard(self._global)

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer at the start of each epoch."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._global = self._build(epoch)
            self._batches = self._shard(self._global)

    def _cut_points(self) -> list[int]:
        """Batch boundaries in the sorted order, packed greedily against each position's worst case."""
        if self.shuffle:
            # Any member of a bucket may land at any position of that bucket: budget for the bucket's longest.
            # Bucket maxima grow with the bucket, so sorting them gives the per-position worst case.
            _, inverse = np.unique(self._buckets, return_inverse=True)
            longest_in_bucket = np.zeros(inverse.max() + 1 if len(inverse) else 0)
            np.maximum.at(longest_in_bucket, inverse, self.durations)
            worst = np.sort(longest_in_bucket[inverse])
        else:
            worst = np.sort(self.durations)
        cuts: list[int] = []
        count, longest = 0, 0.0
        for position, duration in enumerate(worst.tolist()):
            candidate = max(longest, duration)
            too_long = candidate * (count + 1) > self.max_batch_seconds
            too_many = self.max_batch_size is not None and count >= self.max_batch_size
            if count and (too_long or too_many):
                cuts.append(position)
                count, candidate = 0, duration
            count += 1
            longest = candidate
        return cuts

    def _build(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch``, the same for any number of processes."""
        rng = np.random.default_rng([self.seed, epoch])
        keys = self._buckets + rng.random(len(self.durations)) if self.shuffle else self.durations
        order = np.argsort(keys, kind="stable")
        batches = [part.tolist() for part in np.split(order, self._cuts) if len(part)]
        if self.shuffle:
            rng.shuffle(batches)
        return batches

    def _shard(self, batches: list[list[int]]) -> list[list[int]]:
        """This process's share: every ``num_replicas``-th global batch, after evening out the count."""
        if self.num_replicas == 1:
            return batches
        batches = list(batches)
        while len(batches) % self.num_replicas:
            tail = len(batches) - len(batches) % self.num_replicas
            largest = max(range(tail, len(batches)), key=lambda i: len(batches[i]))
            batch = batches[largest]
            if len(batch) < 2:  # nothing left to halve (tiny data): repeat the first batches instead
                batches += batches[: self.num_replicas - len(batches) % self.num_replicas]
                break
            half = len(batch) // 2
            batches[largest : largest + 1] = [batch[:half], batch[half:]]
        return batches[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def global_batches(self) -> list[list[int]]:
        """This epoch's batches over all processes, in order."""
        return self._global

    def fingerprint(self, epoch: int | None = None) -> str:
        """A digest of an epoch's global batches (default: the current one), stored with each checkpoint:
        a resumed run checks that it rebuilds the same batch order."""
        batches = self._global if epoch is None or epoch == self.epoch else self._build(epoch)
        return hashlib.sha256(repr(batches).encode()).hexdigest()[:16]

    def padding_share(self) -> float:
        """Share of the padded audio in the current epoch's batches that is padding."""
        total = sum(float(self.durations[b].max()) * len(b) for b in self._global)
        real = float(self.durations.sum())
        return 0.0 if total == 0 else 1.0 - real / total
