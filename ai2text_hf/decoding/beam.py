"""CTC prefix beam search with an optional syllable n-gram LM and hotwords, and :class:`DecodingOptions`, which
picks greedy or beam search and, by default, the model folder's own LM (``<model>/language_model/``).

The search and the LM scorer live in the model files' ``language_model_ai2text.py`` (they travel to the Hub with
the model, so its remote-code pipeline decodes like this package). Without LM or hotwords the search runs
entirely in flashlight's C++ code. With them, the scores come from its ``WordScorer``, a Python ``CTCDecoderLM``
called once per candidate token, which is why ``token_beam`` (tokens tried per frame, by acoustic score) is small
by default: CTC posteriors are peaky, and the few best tokens of a frame hold nearly all of its mass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..language_model_ai2text import (
    DEFAULT_BEAM_THRESHOLD,
    DEFAULT_BEAM_WIDTH,
    DEFAULT_LM_WEIGHT,
    DEFAULT_TOKEN_BEAM,
    DEFAULT_WORD_SCORE,
    LM_FOLDER,
    LexiconFreeBeamSearch,
    WordScorer,
    check_vocabulary,
    language_model_file,
    tuned_weights,
)
from ..tokenization_ai2text import AI2TextTokenizer
from .core import CTCDecoder
from .greedy import GreedyDecoder
from .hotwords import DEFAULT_HOTWORD_WEIGHT, Hotwords
from .lm import resolve_lm_file


def model_language_model(model_dir: str | Path) -> Path | None:
    """``<model_dir>/language_model`` when it holds an LM, else None."""
    folder = Path(model_dir) / LM_FOLDER
    return folder if language_model_file(folder) is not None else None


@dataclass
class DecodingOptions:
    """How posteriors become text. ``beam_width`` 1 without LM or hotwords is greedy decoding.

    Args:
        beam_width: hypotheses kept per frame.
        lm: LM folder from ``ai2text lm build`` (or an ARPA file); :meth:`for_model` gives the model folder's.
        lm_weight: weight of the LM's log probability (natural log) against the acoustic log posteriors.
            Unset: the value ``ai2text lm tune`` stored in the LM folder, else ``DEFAULT_LM_WEIGHT``.
        word_score: bonus per word with an LM, against the LM's cost of each word (which alone favours
            merging syllables). Unset: the LM folder's tuned value, else ``DEFAULT_WORD_SCORE``.
        hotwords: file of phrases to boost, one per line (``phrase<TAB>weight`` overrides the weight).
        hotword_weight: bonus per letter of a hotword phrase.
        token_beam: tokens tried per frame (the acoustically best ones).
        beam_threshold: hypotheses scoring this much below the best are dropped.
    """

    beam_width: int = 1
    lm: str | None = None
    lm_weight: float | None = None
    word_score: float | None = None
    hotwords: str | None = None
    hotword_weight: float = DEFAULT_HOTWORD_WEIGHT
    token_beam: int = DEFAULT_TOKEN_BEAM
    beam_threshold: float = DEFAULT_BEAM_THRESHOLD

    def __post_init__(self) -> None:
        if self.beam_width < 1 or self.token_beam < 1:
            raise ValueError(f"beam_width and token_beam must be at least 1, got {self.beam_width}, {self.token_beam}")
        tuned = tuned_weights(self.lm) if self.lm and Path(self.lm).is_dir() else {}
        if self.lm_weight is None:
            self.lm_weight = tuned.get("lm_weight", DEFAULT_LM_WEIGHT)
        if self.word_score is None:
            self.word_score = tuned.get("word_score", DEFAULT_WORD_SCORE)

    @classmethod
    def create(cls, beam_width: int | None = None, **options) -> DecodingOptions:
        """Options where an unset ``beam_width`` means greedy, or with an LM the beam its weights were tuned at
        (``ai2text lm tune``), else a beam of 10 when an LM or hotwords are given."""
        if beam_width is None and options.get("lm") and Path(options["lm"]).is_dir():
            beam_width = tuned_weights(options["lm"]).get("beam_width")
        if beam_width is None:
            beam_width = DEFAULT_BEAM_WIDTH if options.get("lm") or options.get("hotwords") else 1
        return cls(beam_width=beam_width, **{k: v for k, v in options.items() if v is not None})

    @classmethod
    def for_model(
        cls, model_dir: str | Path, use_lm: bool = True, beam_width: int | None = None, **options
    ) -> DecodingOptions:
        """Options for ``model_dir``: its own LM (``language_model/``, beam search) unless ``use_lm`` is False or
        another ``lm`` is given; otherwise as :meth:`create` (greedy unless a beam or hotwords are asked for)."""
        if use_lm and not options.get("lm"):
            own = model_language_model(model_dir)
            options["lm"] = str(own) if own is not None else None
        elif not use_lm and options.get("lm"):
            raise ValueError(f"An LM ({options['lm']}) and no LM (use_lm=False, --no-lm) were both asked for.")
        return cls.create(beam_width=beam_width, **options)

    @property
    def method(self) -> str:
        return "beam" if self.beam_width > 1 or self.lm or self.hotwords else "greedy"

    def to_dict(self) -> dict:
        """The settings that shaped the output, for result files (greedy has none)."""
        if self.method == "greedy":
            return {"method": "greedy"}
        settings = {"method": "beam", **asdict(self)}
        if not self.lm:
            for key in ("lm", "lm_weight", "word_score"):
                settings.pop(key)
        if not self.hotwords:
            for key in ("hotwords", "hotword_weight"):
                settings.pop(key)
        return settings


class BeamSearchDecoder(CTCDecoder):
    """Lexicon-free CTC prefix beam search; the best hypothesis's frame path is decoded like greedy's."""

    name = "beam"

    def __init__(self, tokenizer: AI2TextTokenizer, options: DecodingOptions):
        super().__init__(tokenizer)
        self.options = options
        delimiter = tokenizer.word_delimiter_token
        hotwords = None
        if options.hotwords:
            hotwords = Hotwords.from_file(options.hotwords, options.hotword_weight, delimiter, tokenizer.tone_placement)
        scorer = None
        if options.lm or hotwords is not None:
            lm_file = resolve_lm_file(options.lm) if options.lm else None
            if options.lm and Path(options.lm).is_dir():
                check_vocabulary(options.lm, tokenizer)
            tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
            scorer = WordScorer(tokens, delimiter, lm_file, options.lm_weight, options.word_score, hotwords)
        self._search = LexiconFreeBeamSearch(
            tokenizer, scorer, options.beam_width, options.token_beam, options.beam_threshold
        )

    def best_paths(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        return self._search.best_paths(log_probs, lengths)


def build_decoder(tokenizer: AI2TextTokenizer, options: DecodingOptions | None = None) -> CTCDecoder:
    """The decoder ``options`` ask for (greedy by default)."""
    options = options or DecodingOptions()
    if options.method == "greedy":
        return GreedyDecoder(tokenizer)
    return BeamSearchDecoder(tokenizer, options)
