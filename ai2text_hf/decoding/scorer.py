"""Language-model and hotword scores for torchaudio's lexicon-free CTC beam search.

The lexicon-free decoder asks its LM for a score each time a hypothesis emits a token. This
``CTCDecoderLM`` turns those letter-by-letter calls into word-level scoring: it collects the letters
of the current word and, when the word delimiter (or the end) arrives, scores the word with the n-gram
model through the KenLM query code bundled with flashlight-text. No lexicon is involved, so syllables
the LM never saw can still be spelt (they get ``<unk>``'s probability). Hotword bonuses are added
letter by letter (see :mod:`.hotwords`).

Each LM state is a node of the tree of token prefixes (``CTCDecoderLMState.child``), so the decoder
only merges hypotheses that spell the same text; a word delimiter that ends no word (a repeat, or
one at the start) keeps the state unchanged, since it changes no text.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary
from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState

from .hotwords import Hotwords, MatchState
from .lm import UNK, arpa_vocabulary


@contextmanager
def _stderr_to_exception() -> Iterator[None]:
    """KenLM draws a progress bar on the process's stderr while reading an ARPA file: keep it off the
    terminal, but put what it wrote into the exception if loading fails."""
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except Exception as error:
            sink.seek(0)
            raise RuntimeError(f"{error}\n{sink.read().decode(errors='replace')}") from error
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@dataclass
class _Prefix:
    lm: object | None  # KenLM state after the completed words
    word: str  # letters of the word being spelt
    hot: MatchState | None
    score: float  # score of the token that led here


class WordScorer(CTCDecoderLM):
    """Word n-gram + hotword scorer for a lexicon-free CTC decoder.

    Args:
        tokens: the tokenizer's tokens by id.
        delimiter: the word delimiter token.
        arpa: ARPA language model, or None for hotwords / word score only.
        lm_weight: weight of the LM's natural-log probability against the acoustic log posteriors.
        word_score: added per completed word with an LM (it counters the LM's preference for fewer, merged words).
        hotwords: phrases to boost, or None.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        delimiter: str,
        arpa: Path | None = None,
        lm_weight: float = 0.5,
        word_score: float = 0.0,
        hotwords: Hotwords | None = None,
    ):
        CTCDecoderLM.__init__(self)
        self._tokens = list(tokens)
        self._delimiter = self._tokens.index(delimiter)
        self._kenlm = None
        if arpa is not None:
            self._words = Dictionary(arpa_vocabulary(arpa))
            self._words.set_default_index(self._words.get_index(UNK))
            with _stderr_to_exception():
                self._kenlm = KenLM(str(arpa), self._words)
        self._lm_scale = lm_weight * math.log(10)  # KenLM returns log10
        self._word_score = word_score
        self._hotwords = hotwords
        self._prefixes: dict[CTCDecoderLMState, _Prefix] = {}

    def start(self, start_with_nothing: bool) -> CTCDecoderLMState:
        state = CTCDecoderLMState()
        lm = self._kenlm.start(False) if self._kenlm is not None else None
        hot = self._hotwords.start() if self._hotwords is not None else None
        self._prefixes = {state: _Prefix(lm, "", hot, 0.0)}  # a new utterance: forget the last one's tree
        return state

    def score(self, state: CTCDecoderLMState, token: int) -> tuple[CTCDecoderLMState, float]:
        prefix = self._prefixes[state]
        if token == self._delimiter and not prefix.word:
            return state, 0.0
        child = state.child(token)
        extended = self._prefixes.get(child)
        if extended is None:
            extended = self._prefixes[child] = self._extend(prefix, token)
        return child, extended.score

    def finish(self, state: CTCDecoderLMState) -> tuple[CTCDecoderLMState, float]:
        prefix = self._prefixes[state]
        lm, score = self._end_word(prefix) if prefix.word else (prefix.lm, 0.0)
        if self._kenlm is not None:
            score += self._lm_scale * self._kenlm.finish(lm)[1]
        if prefix.hot is not None:
            score += self._hotwords.finish(prefix.hot)
        return state, score

    def _extend(self, prefix: _Prefix, token: int) -> _Prefix:
        char = self._tokens[token]
        if token == self._delimiter:
            lm, score = self._end_word(prefix)
            word = ""
        else:
            lm, score, word = prefix.lm, 0.0, prefix.word + char
        hot = prefix.hot
        if hot is not None:
            hot, bonus = self._hotwords.step(hot, char)
            score += bonus
        return _Prefix(lm, word, hot, score)

    def _end_word(self, prefix: _Prefix) -> tuple[object | None, float]:
        if self._kenlm is None:
            return None, 0.0
        lm, log10_prob = self._kenlm.score(prefix.lm, self._words.get_index(prefix.word))
        return lm, self._lm_scale * log10_prob + self._word_score
