"""Character-level CTC tokenizer for Vietnamese that normalises text as it encodes it.

It subclasses transformers' ``Wav2Vec2CTCTokenizer`` so CTC decoding, character/word offsets and the ASR
pipeline's ``return_timestamps`` keep working unchanged. This file travels to the Hub with the model: its only
package import is the single-dot relative import of ``normalization_vi``, which transformers' dynamic-module
loader copies alongside it.
"""

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from transformers import Wav2Vec2CTCTokenizer

from .normalization_vi import TONE_PLACEMENTS, VIETNAMESE_ALPHABET, normalize_text

logger = logging.getLogger(__name__)

_PAD_TOKEN = "<pad>"
_UNK_TOKEN = "<unk>"
_WORD_DELIMITER_TOKEN = "|"


def _build_vocab(
    characters: Iterable[str],
    pad_token: str = _PAD_TOKEN,
    unk_token: str = _UNK_TOKEN,
    word_delimiter_token: str = _WORD_DELIMITER_TOKEN,
) -> dict[str, int]:
    """Token -> id with the CTC blank (``pad_token``) at 0, then ``unk_token``, the word delimiter and the
    characters in the order given."""
    tokens = dict.fromkeys([pad_token, unk_token, word_delimiter_token, *characters])
    return {token: index for index, token in enumerate(tokens)}


@contextmanager
def _temporary_vocab_file(vocab: dict[str, int]) -> Iterator[str]:
    """``Wav2Vec2CTCTokenizer.__init__`` only reads its vocabulary from a path: hand an in-memory one over
    through a short-lived file rather than re-implementing the parent's initialisation."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "vocab.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(vocab, handle, ensure_ascii=False)
        yield path


class AI2TextTokenizer(Wav2Vec2CTCTokenizer):
    """Vietnamese character tokenizer for CTC: ``<pad>`` (0, the CTC blank), ``<unk>`` (1), ``|`` (2, word
    delimiter), then one id per letter.

    Args:
        vocab_file: A ``vocab.json`` (the ``from_pretrained`` path). Without it, ``vocab`` is used, and
            without that the fixed :data:`VIETNAMESE_ALPHABET` vocabulary (96 ids).
        tone_placement: ``"classic"`` (hòa) or ``"modern"`` (hoà), see ``normalization_vi.TONE_PLACEMENTS``;
            saved in ``tokenizer_config.json`` so inference encodes like training.
        vocab: An in-memory token -> id mapping, e.g. from :meth:`from_texts`.
        split_special_tokens: Defaults to ``True`` because inputs are transcripts, never token markup: a
            literal ``|`` or ``<unk>`` in a text must not become a control token.

    Every input text goes through ``normalize_text`` before encoding. Characters the vocabulary lacks become
    ``<unk>`` and are named in a warning, once per character and tokenizer, so a large ``datasets.map`` does
    not flood the log; use :meth:`unknown_characters` to audit a dataset row by row. ``do_lower_case`` is
    always ``False``: in the parent it upper-cases, and the normaliser already lowercases.
    Vocabulary tokens longer than one character are never produced by encoding (texts are split into
    characters), only by decoding.
    """

    def __init__(
        self,
        vocab_file: str | None = None,
        unk_token: str = _UNK_TOKEN,
        pad_token: str = _PAD_TOKEN,
        word_delimiter_token: str = _WORD_DELIMITER_TOKEN,
        bos_token: str | None = None,
        eos_token: str | None = None,
        tone_placement: str = "classic",
        vocab: dict[str, int] | None = None,
        do_lower_case: bool = False,
        split_special_tokens: bool = True,
        **kwargs: Any,
    ) -> None:
        if tone_placement not in TONE_PLACEMENTS:
            raise ValueError(f"tone_placement must be one of {TONE_PLACEMENTS}, got {tone_placement!r}")
        if vocab_file is not None and vocab is not None:
            raise ValueError("Give `vocab_file` or `vocab`, not both.")
        if do_lower_case:
            logger.warning("Ignoring do_lower_case=True: text is normalised to lowercase before encoding.")
        self.tone_placement = tone_placement
        self._reported_unknown: set[str] = set()
        parent_kwargs = dict(
            unk_token=unk_token,
            pad_token=pad_token,
            word_delimiter_token=word_delimiter_token,
            bos_token=bos_token,
            eos_token=eos_token,
            do_lower_case=False,
            tone_placement=tone_placement,
            split_special_tokens=split_special_tokens,
            **kwargs,
        )
        if vocab_file is not None:
            super().__init__(vocab_file, **parent_kwargs)
            return
        if vocab is None:
            vocab = _build_vocab(VIETNAMESE_ALPHABET, pad_token, unk_token, word_delimiter_token)
        with _temporary_vocab_file(vocab) as path:
            super().__init__(path, **parent_kwargs)

    @classmethod
    def from_texts(cls, texts: Iterable[str], **kwargs: Any) -> "AI2TextTokenizer":
        """A tokenizer whose vocabulary is the characters seen in ``texts`` after normalisation, for corpora
        that need fewer letters (or extra ones) than the fixed alphabet. Special tokens keep ids 0-2; letters
        of :data:`VIETNAMESE_ALPHABET` follow in its order, any other character after them by code point, so
        ``texts`` should be cleaned first (see ``normalization_vi.unknown_characters``). ``kwargs`` (e.g.
        ``tone_placement``) go to the constructor."""
        tone_placement = kwargs.get("tone_placement", "classic")
        specials = (
            kwargs.get("pad_token", _PAD_TOKEN),
            kwargs.get("unk_token", _UNK_TOKEN),
            kwargs.get("word_delimiter_token", _WORD_DELIMITER_TOKEN),
        )
        seen: set[str] = set()
        for text in texts:
            seen.update(normalize_text(text, tone_placement))
        seen -= {" ", *specials}
        alphabet_order = {char: index for index, char in enumerate(VIETNAMESE_ALPHABET)}
        characters = sorted(seen, key=lambda char: (alphabet_order.get(char, len(alphabet_order)), char))
        return cls(vocab=_build_vocab(characters, *specials), **kwargs)

    def _known_characters(self) -> set[str]:
        """Vocabulary entries a text character may map to: everything but the special tokens."""
        return set(self.encoder) - set(self.all_special_tokens) - {self.word_delimiter_token}

    def unknown_characters(self, text: str) -> list[str]:
        """Sorted unique characters of ``text``, normalised as encoding does, that would become ``<unk>``."""
        normalized = normalize_text(text, self.tone_placement)
        return sorted(set(normalized) - self._known_characters() - {" "})

    def prepare_for_tokenization(
        self, text: str, is_split_into_words: bool = False, **kwargs: Any
    ) -> tuple[str, dict[str, Any]]:
        """Normalise as the training labels were, so raw transcripts encode to what the model emits."""
        text = normalize_text(text, self.tone_placement)
        return super().prepare_for_tokenization(text, is_split_into_words=is_split_into_words, **kwargs)

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        """One token per character of normalised text: spaces become the word delimiter, characters outside
        the vocabulary ``<unk>`` (reported, never dropped, so labels keep their length and alignment)."""
        known = self._known_characters()
        unreported = sorted(set(text) - known - {" "} - self._reported_unknown)
        if unreported:
            self._reported_unknown.update(unreported)
            logger.warning(
                "Encoding characters outside the vocabulary as %s: %s (each character is reported once).",
                self.unk_token,
                " ".join(repr(char) for char in unreported),
            )
        delimiter, unk = self.word_delimiter_token, self.unk_token
        return [delimiter if char == " " else char if char in known else unk for char in text]

    def convert_tokens_to_string(
        self,
        tokens: list[str],
        group_tokens: bool = True,
        spaces_between_special_tokens: bool = False,
        output_char_offsets: bool = False,
        output_word_offsets: bool = False,
    ) -> dict[str, Any]:
        """The parent's CTC collapse, with runs of delimiters (``| <pad> |``) giving a single space."""
        output = super().convert_tokens_to_string(
            tokens,
            group_tokens=group_tokens,
            spaces_between_special_tokens=spaces_between_special_tokens,
            output_char_offsets=output_char_offsets,
            output_word_offsets=output_word_offsets,
        )
        output["text"] = " ".join(output["text"].split())
        return output
