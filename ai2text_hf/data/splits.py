"""Train/validation/test assignment: a deterministic speaker-disjoint auto-split, and the speaker-overlap warning.

A speaker heard in training makes validation/test scores optimistic, so ``auto_split`` keeps every speaker in
one split. Speakers are visited in an order given by a seeded hash of their id, never by CSV order, and
each goes to the split furthest below its share so far: the same speakers, utterance counts and seed give
the same split however the rows are ordered, and the shares track the ratios as closely as whole
speakers allow. A row without a speaker id is its own group.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

from .validation import SPLITS


def parse_split_ratios(value: str | Sequence[float]) -> tuple[float, float, float]:
    """``"0.9,0.05,0.05"`` (or a sequence) → train/validation/test shares, checked to be ≥ 0 and sum to 1."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        ratios = tuple(float(part) for part in parts)
    except ValueError as error:
        raise ValueError(f"Auto-split ratios must be numbers like 0.9,0.05,0.05, not {value!r}.") from error
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(
            f"Auto-split needs three shares train,validation,test that are >= 0 and sum to 1, not {value!r}."
        )
    return ratios  # type: ignore[return-value]


def auto_split(groups: Sequence[str], ratios: Sequence[float], seed: int = 0) -> list[str]:
    """The split of each row, given each row's group (speaker id); a group never spans two splits."""
    sizes = Counter(groups)
    order = sorted(sizes, key=lambda group: hashlib.blake2b(f"{seed}\0{group}".encode(), digest_size=8).digest())
    assigned = dict.fromkeys(SPLITS, 0)
    split_of: dict[str, str] = {}
    seen = 0
    for group in order:
        seen += sizes[group]
        split = max(SPLITS, key=lambda s: ratios[SPLITS.index(s)] * seen - assigned[s])
        assigned[split] += sizes[group]
        split_of[group] = split
    return [split_of[group] for group in groups]


def speaker_overlap_warning(speakers: Sequence[str], splits: Sequence[str]) -> str | None:
    """A warning naming speakers of the train split who also occur in validation or test.

    Only overlap with train makes scores optimistic; a speaker shared by validation and test does not (empty
    speaker ids are ignored).
    """
    seen_in: dict[str, set[str]] = {}
    for speaker, split in zip(speakers, splits):
        if speaker:
            seen_in.setdefault(speaker, set()).add(split)
    shared = sorted(speaker for speaker, where in seen_in.items() if "train" in where and len(where) > 1)
    if not shared:
        return None
    shown = ", ".join(f"{name} ({'/'.join(s for s in SPLITS if s in seen_in[name])})" for name in shared[:3])
    more = f" and {len(shared) - 3} more" if len(shared) > 3 else ""
    return (
        f"{len(shared)} train speaker(s) also occur in validation or test: {shown}{more}. Scores on them will be "
        "optimistic for them; use --auto-split for a speaker-disjoint split."
    )
