"""Hotword boosting: a bonus for spelling user phrases (names, places, product terms) during beam search.

The phrases are kept in a character trie. A hypothesis that spells a phrase from a word boundary earns
``weight`` per letter as it goes, so the phrase survives pruning while it is being spelt; if the
spelling then leaves the phrase (or the phrase is not followed by a word boundary) the bonus earned so
far is taken back, so only complete, whole-word matches keep it. This is the usual contextual-biasing
scheme of transducer toolkits, applied to CTC, where no toolkit offers it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..normalization_vi import normalize_text

DEFAULT_HOTWORD_WEIGHT = 1.5
#: Largest weight accepted: a huge or infinite bonus makes beam scores overflow (inf - inf is NaN, and the
#: search loses every hypothesis), while 10 nats per letter already outweighs any acoustic evidence.
MAX_HOTWORD_WEIGHT = 10.0


@dataclass(eq=False)  # nodes are compared by identity
class TrieNode:
    children: dict[str, TrieNode] = field(default_factory=dict)
    weight: float = 0.0  # bonus per letter on the way to this node (the largest of the phrases through it)
    end: bool = False  # a phrase ends here


@dataclass(frozen=True)
class MatchState:
    """Where a hypothesis stands in the trie: ``node`` is None mid-word outside any phrase;
    ``pending`` is the bonus earned by the current, not yet complete, match."""

    node: TrieNode | None
    pending: float = 0.0


class Hotwords:
    """A phrase trie over the tokenizer's characters; the word delimiter separates words of a phrase.

    Args:
        phrases: ``(phrase, weight)`` pairs; phrases are normalised like transcripts.
        delimiter: the tokenizer's word delimiter token (``|``).
        tone_placement: the model's tone placement, so phrases are spelt the way the model spells.
    """

    def __init__(self, phrases: Iterable[tuple[str, float]], delimiter: str = "|", tone_placement: str = "classic"):
        self.root = TrieNode()
        self.delimiter = delimiter
        self.phrases: list[str] = []
        for phrase, weight in phrases:
            if not 0 <= weight <= MAX_HOTWORD_WEIGHT:  # also False for NaN
                raise ValueError(
                    f"Hotword {phrase.strip()!r} has weight {weight:g}: a weight is a number from 0 to "
                    f"{MAX_HOTWORD_WEIGHT:g} (default {DEFAULT_HOTWORD_WEIGHT:g})."
                )
            text = normalize_text(phrase, tone_placement)
            if not text:
                continue
            self.phrases.append(text)
            node = self.root
            for char in text.replace(" ", delimiter):
                node = node.children.setdefault(char, TrieNode())
                node.weight = max(node.weight, weight)
            node.end = True
        if not self.phrases:
            raise ValueError("No hotwords: every phrase was empty after normalisation.")

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        weight: float = DEFAULT_HOTWORD_WEIGHT,
        delimiter: str = "|",
        tone_placement: str = "classic",
    ) -> Hotwords:
        """One phrase per line, optionally ``phrase<TAB>weight`` to override ``weight``; ``#`` starts a comment."""
        phrases = []
        for line in Path(path).read_text(encoding="utf-8-sig").splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            phrase, _, own_weight = line.partition("\t")
            try:
                phrases.append((phrase, float(own_weight) if own_weight.strip() else weight))
            except ValueError:
                raise ValueError(
                    f"Hotword {phrase.strip()!r} has weight {own_weight.strip()!r}, which is not a number: write "
                    f"'phrase<TAB>weight' with a weight from 0 to {MAX_HOTWORD_WEIGHT:g}."
                ) from None
        return cls(phrases, delimiter, tone_placement)

    def start(self) -> MatchState:
        return MatchState(self.root)

    def step(self, state: MatchState, char: str) -> tuple[MatchState, float]:
        """The state after ``char`` and the score change (a bonus, or the take-back of a failed match)."""
        node = state.node
        if node is not None:
            child = node.children.get(char)
            if char == self.delimiter and node.end:  # a phrase is complete: keep its bonus
                return MatchState(child or self.root), 0.0
            if child is not None:
                bonus = 0.0 if char == self.delimiter else child.weight
                return MatchState(child, state.pending + bonus), bonus
        # No (longer) match: take the pending bonus back; a new match may start at the next word.
        return MatchState(self.root if char == self.delimiter else None), -state.pending

    def finish(self, state: MatchState) -> float:
        """Score change at the end of the utterance: a complete phrase keeps its bonus."""
        return 0.0 if state.node is not None and state.node.end else -state.pending
