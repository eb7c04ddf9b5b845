"""A model folder's n-gram language model (``language_model/``) and the CTC beam search that scores with it.

This file travels with the model files (``trust_remote_code``): it imports nothing of ai2text-hf, only torch,
transformers, torchaudio and flashlight-text (the decoder torchaudio's ``ctc_decoder`` runs on:
``pip install flashlight-text``). ai2text-hf's own decoding builds on it, so both decode alike.

``language_model/`` holds ``lm.arpa`` (a syllable n-gram model) and/or its KenLM binary ``lm.bin`` with the
binary's vocabulary ``words.txt`` (loaded in milliseconds; preferred when present), ``lm.json`` (how it was built,
and the vocabulary of the model it was built for) and, after ``ai2text lm tune``, ``decoding.json`` (the LM weight
and word score tuned for this model and LM).

The lexicon-free decoder asks its LM for a score each time a hypothesis emits a token. :class:`WordScorer`
turns those letter-by-letter calls into word-level scoring: it collects the letters of the current word and,
when the word delimiter (or the end) arrives, scores the word with the n-gram model through the KenLM query
code bundled with flashlight-text. No lexicon is involved, so syllables the LM never saw can still be spelt
(they get ``<unk>``'s probability). Hotword bonuses are added letter by letter by an optional matcher.

Each LM state is a node of the tree of token prefixes (``CTCDecoderLMState.child``), so the decoder only
merges hypotheses that spell the same text; a word delimiter that ends no word (a repeat, or one at the
start) keeps the state unchanged, since it changes no text.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchaudio.models.decoder import CTCDecoderLM, CTCDecoderLMState, ctc_decoder
from transformers.utils import cached_file

try:  # flashlight-text is what torchaudio's CTC decoder needs; the pip name differs from the import name
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary
except ImportError as error:
    message = f"Decoding with the language model needs flashlight-text: pip install flashlight-text ({error})"
    raise ImportError(message) from error

LM_FOLDER = "language_model"
ARPA_NAME = "lm.arpa"
BINARY_NAME = "lm.bin"  # KenLM binary (trie) of the ARPA model
WORDS_NAME = "words.txt"  # the binary's vocabulary, one word per line: the decoder's dictionary needs it
INFO_NAME = "lm.json"
TUNED_NAME = "decoding.json"  # LM weight and word score tuned for this model and LM by `ai2text lm tune`
UNK = "<unk>"
DEFAULT_BEAM_WIDTH = 10
# Untuned LM weights: the best pair on the first demo model's validation split; `ai2text lm tune` finds the
# pair for a given model and LM and stores it beside the LM.
DEFAULT_LM_WEIGHT = 0.5
DEFAULT_WORD_SCORE = 3.0
DEFAULT_TOKEN_BEAM = 5
DEFAULT_BEAM_THRESHOLD = 15.0


def vocabulary_fingerprint(tokenizer: Any) -> dict:
    """What an LM built for ``tokenizer`` records of it: its tokens in id order, tone placement and their hash."""
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)
    tone_placement = getattr(tokenizer, "tone_placement", None)
    key = json.dumps({"tokens": tokens, "tone_placement": tone_placement}, ensure_ascii=False)
    return {
        "sha256": hashlib.sha256(key.encode("utf-8")).hexdigest(),
        "size": len(tokens),
        "tone_placement": tone_placement,
        "tokens": tokens,
    }


def _describe(fingerprint: dict) -> str:
    tone = f", {fingerprint['tone_placement']} tone placement" if fingerprint.get("tone_placement") else ""
    return f"{fingerprint['size']} tokens{tone}, sha256 {fingerprint['sha256'][:12]}"


def read_info(lm_dir: str | Path) -> dict:
    """``lm.json`` of an LM folder (empty when it has none)."""
    path = Path(lm_dir) / INFO_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def check_vocabulary(lm_dir: str | Path, tokenizer: Any) -> None:
    """Refuse an LM recorded as built for another vocabulary than ``tokenizer``'s, naming both."""
    built_for = read_info(lm_dir).get("tokenizer")
    if not built_for:
        return  # a general LM (built without --model): nothing recorded to compare
    own = vocabulary_fingerprint(tokenizer)
    if built_for["sha256"] == own["sha256"]:
        return
    only_lm = sorted(set(built_for["tokens"]) - set(own["tokens"]))
    only_model = sorted(set(own["tokens"]) - set(built_for["tokens"]))
    differences = f"tokens only in the LM's vocabulary: {' '.join(only_lm) or 'none'}; only in the model's: " + (
        " ".join(only_model) or "none"
    )
    raise ValueError(
        f"The language model in {lm_dir} was built for the vocabulary of {built_for.get('model', 'another model')} "
        f"({_describe(built_for)}), not for this model's ({tokenizer.name_or_path}: {_describe(own)}); "
        f"{differences}. Build one for this model: ai2text lm build --model <model folder> --text <text files>."
    )


def tuned_weights(lm_dir: str | Path) -> dict[str, float]:
    """``lm_weight`` and ``word_score`` stored in an LM folder by ``ai2text lm tune``, and the ``beam_width`` they
    were tuned at (the weights suit that beam); empty if it has none."""
    tuned = Path(lm_dir) / TUNED_NAME
    if not tuned.is_file():
        return {}
    values = json.loads(tuned.read_text(encoding="utf-8"))
    weights = {key: float(values[key]) for key in ("lm_weight", "word_score")}
    beam_width = values.get("tuned_on", {}).get("beam_width")
    return weights | ({"beam_width": int(beam_width)} if beam_width else {})


def language_model_file(lm_dir: str | Path) -> Path | None:
    """The file the decoder loads from an LM folder: the KenLM binary when it has one with its vocabulary, else
    the ARPA file; None when it has neither."""
    lm_dir = Path(lm_dir)
    if (lm_dir / BINARY_NAME).is_file() and (lm_dir / WORDS_NAME).is_file():
        return lm_dir / BINARY_NAME
    return lm_dir / ARPA_NAME if (lm_dir / ARPA_NAME).is_file() else None


def find_language_model(model: str | Path, **hub_kwargs: Any) -> Path | None:
    """The ``language_model/`` folder of a local model folder or Hub repository (downloaded), or None."""
    files = {}
    for name in (BINARY_NAME, WORDS_NAME, ARPA_NAME, INFO_NAME, TUNED_NAME):
        found = cached_file(
            str(model),
            f"{LM_FOLDER}/{name}",
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub_kwargs,
        )
        if found:
            files[name] = Path(found)
    lm_dir = next(iter(files.values())).parent if files else None
    return lm_dir if lm_dir is not None and language_model_file(lm_dir) is not None else None


def lm_vocabulary(lm_file: str | Path) -> list[str]:
    """The words of an ARPA file or of a KenLM binary (from the ``words.txt`` beside it)."""
    lm_file = Path(lm_file)
    if lm_file.name == BINARY_NAME:
        return (lm_file.parent / WORDS_NAME).read_text(encoding="utf-8").split()
    return arpa_vocabulary(lm_file)


def arpa_vocabulary(path: str | Path) -> list[str]:
    """The unigrams of an ARPA file (the decoder's word dictionary)."""
    words, in_unigrams = [], False
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line == "\\1-grams:":
                in_unigrams = True
            elif in_unigrams and line.startswith("\\"):
                break
            elif in_unigrams and line:
                words.append(line.split("\t")[1] if "\t" in line else line.split()[1])
    if not words:
        raise ValueError(f"{path} has no 1-grams section: not an ARPA language model.")
    return words


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
    hot: object | None  # the hotword matcher's state
    score: float  # score of the token that led here


class WordScorer(CTCDecoderLM):
    """Word n-gram (+ hotword) scorer for a lexicon-free CTC decoder.

    Args:
        tokens: the tokenizer's tokens by id.
        delimiter: the word delimiter token.
        lm: the n-gram model (an ARPA file, or ``lm.bin`` with its ``words.txt``), or None for hotwords / word
            score only.
        lm_weight: weight of the LM's natural-log probability against the acoustic log posteriors.
        word_score: added per completed word with an LM (it counters the LM's preference for fewer, merged words).
        hotwords: a matcher with ``start()``, ``step(state, char) -> (state, bonus)`` and ``finish(state)``, or None.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        delimiter: str,
        lm: Path | None = None,
        lm_weight: float = DEFAULT_LM_WEIGHT,
        word_score: float = 0.0,
        hotwords: Any = None,
    ):
        CTCDecoderLM.__init__(self)
        self._tokens = list(tokens)
        self._delimiter = self._tokens.index(delimiter)
        self._kenlm = None
        if lm is not None:
            self._words = Dictionary(lm_vocabulary(lm))
            self._words.set_default_index(self._words.get_index(UNK))
            with _stderr_to_exception():
                self._kenlm = KenLM(str(lm), self._words)
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


class LexiconFreeBeamSearch:
    """CTC prefix beam search (torchaudio's ``ctc_decoder``, lexicon-free) returning each utterance's frame path.

    Args:
        tokenizer: the model's CTC tokenizer (its pad token is the blank, its word delimiter the silence).
        scorer: the LM / hotword scorer, or None for a search on acoustic scores alone.
        beam_width: hypotheses kept per frame.
        token_beam: tokens tried per frame (the acoustically best ones).
        beam_threshold: hypotheses scoring this much below the best are dropped.
    """

    def __init__(
        self,
        tokenizer: Any,
        scorer: CTCDecoderLM | None = None,
        beam_width: int = DEFAULT_BEAM_WIDTH,
        token_beam: int = DEFAULT_TOKEN_BEAM,
        beam_threshold: float = DEFAULT_BEAM_THRESHOLD,
    ):
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self._decoder = ctc_decoder(
            lexicon=None,
            tokens=tokens,
            lm=scorer,
            beam_size=beam_width,
            beam_size_token=min(token_beam, len(tokens)),
            beam_threshold=beam_threshold,
            lm_weight=1.0,  # the scorer applies the weights
            blank_token=tokenizer.pad_token,
            sil_token=tokenizer.word_delimiter_token,
            unk_word=tokenizer.unk_token,
        )

    def best_paths(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """The best hypothesis's token per valid frame of each utterance of contiguous float32 CPU log posteriors."""
        # torchaudio's hypotheses keep only the first frame of each token; flashlight's raw result has the
        # whole frame path (between a start and an end sentinel), which timestamps and confidences need.
        batch, _, vocab = log_probs.shape
        paths = []
        for b in range(batch):
            length = int(lengths[b])
            pointer = log_probs.data_ptr() + log_probs.element_size() * b * log_probs.stride(0)
            best = self._decoder.decoder.decode(pointer, length, vocab)[0]
            paths.append(torch.tensor(best.tokens[1 : length + 1], dtype=torch.long))
        return paths


def lm_beam_search(
    tokenizer: Any,
    lm_dir: str | Path,
    beam_width: int | None = None,
    lm_weight: float | None = None,
    word_score: float | None = None,
) -> LexiconFreeBeamSearch:
    """Beam search with the LM of ``lm_dir`` at its tuned beam and weights (unless given), after checking its
    vocabulary."""
    check_vocabulary(lm_dir, tokenizer)
    tuned = tuned_weights(lm_dir)
    scorer = WordScorer(
        tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))),
        tokenizer.word_delimiter_token,
        language_model_file(lm_dir),
        tuned.get("lm_weight", DEFAULT_LM_WEIGHT) if lm_weight is None else lm_weight,
        tuned.get("word_score", DEFAULT_WORD_SCORE) if word_score is None else word_score,
    )
    return LexiconFreeBeamSearch(tokenizer, scorer, beam_width or int(tuned.get("beam_width", DEFAULT_BEAM_WIDTH)))
