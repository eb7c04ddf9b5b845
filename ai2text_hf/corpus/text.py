"""The words a user wrote and the normalised labels the model aligns, kept side by side.

Normalisation changes the word count (``1.000`` is read ``một nghìn``, ``chào,bạn`` splits in two, a lone
``—`` vanishes), so each written word is normalised on its own and remembers which normalised words it
became; timings computed on the labels are then reported on the words as written.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Wav2Vec2CTCTokenizer

from ..normalization_vi import normalize_text


@dataclass(frozen=True)
class WrittenWord:
    """One whitespace-separated word of the transcript and the normalised words ``[first, last)`` it reads as."""

    text: str
    first: int
    last: int


@dataclass(frozen=True)
class AlignmentText:
    """A transcript prepared for alignment: the written words and the normalised words they map onto."""

    written: list[WrittenWord]
    words: list[str]  # normalised words, the ones aligned

    @property
    def normalized(self) -> str:
        return " ".join(self.words)


def prepare_text(transcript: str, tone_placement: str = "classic") -> AlignmentText:
    """Split ``transcript`` into written words, each mapped to its normalised words.

    A written token that normalises to nothing (punctuation standing alone, e.g. ``-`` or ``…``) is joined to
    the word before it (or after it, at the start) so it is still shown, with that word's timing.
    """
    written: list[WrittenWord] = []
    words: list[str] = []
    pending = ""  # leading tokens with no sound, waiting for the first word that has some
    for token in transcript.split():
        spoken = normalize_text(token, tone_placement).split()
        if not spoken:
            if written:
                last = written[-1]
                written[-1] = WrittenWord(f"{last.text} {token}", last.first, last.last)
            else:
                pending = f"{pending} {token}".strip()
            continue
        text = f"{pending} {token}".strip()
        pending = ""
        written.append(WrittenWord(text, len(words), len(words) + len(spoken)))
        words += spoken
    return AlignmentText(written=written, words=words)


def unknown_characters(text: AlignmentText, tokenizer: Wav2Vec2CTCTokenizer) -> list[str]:
    """Characters of the normalised words the model has no label for (it could never emit them)."""
    known = set(tokenizer.get_vocab()) - set(tokenizer.all_special_tokens) - {tokenizer.word_delimiter_token}
    return sorted(set("".join(text.words)) - known)


def label_ids(text: AlignmentText, tokenizer: Wav2Vec2CTCTokenizer) -> tuple[list[int], list[int]]:
    """Label ids of the normalised words with the word delimiter between them, as the model was trained to
    emit them, and the word index of each label (-1 for a delimiter)."""
    vocab = tokenizer.get_vocab()
    delimiter = vocab[tokenizer.word_delimiter_token]
    ids: list[int] = []
    owners: list[int] = []
    for index, word in enumerate(text.words):
        if index:
            ids.append(delimiter)
            owners.append(-1)
        ids += [vocab[char] for char in word]
        owners += [index] * len(word)
    return ids, owners
