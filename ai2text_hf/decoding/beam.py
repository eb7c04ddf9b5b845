"""CTC prefix beam search on torchaudio's ``ctc_decoder`` (flashlight-text), with an optional syllable
n-gram LM and hotwords; and :class:`DecodingOptions`, which picks greedy or beam search.

Without LM or hotwords the search runs entirely in flashlight's C++ code. With them, the scores come
from :class:`~.scorer.WordScorer`, a Python ``CTCDecoderLM`` called once per candidate token, which is
why ``token_beam`` (tokens tried per frame, by acoustic score) is small by default: CTC posteriors are
peaky, and the few best tokens of a frame hold nearly all of its mass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torchaudio.models.decoder import ctc_decoder

from ..tokenization_ai2text import AI2TextTokenizer
from .core import CTCDecoder
from .greedy import GreedyDecoder
from .hotwords import DEFAULT_HOTWORD_WEIGHT, Hotwords
from .lm import resolve_arpa, tuned_weights
from .scorer import WordScorer

DEFAULT_BEAM_WIDTH = 10
# Untuned LM weights: the best pair on the first demo model's val split. `ai2text lm tune` finds the
# pair for a given model and LM and stores it in the LM folder, where DecodingOptions picks it up.
DEFAULT_LM_WEIGHT = 0.5
DEFAULT_WORD_SCORE = 3.0


@dataclass
class DecodingOptions:
    """How posteriors become text. ``beam_width`` 1 without LM or hotwords is greedy decoding.

    Args:
        beam_width: hypotheses kept per frame.
        lm: LM folder from ``ai2text lm build`` (or an ARPA file).
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
    token_beam: int = 5
    beam_threshold: float = 15.0

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
        """Options where an unset ``beam_width`` means greedy, or a beam of 10 when an LM or hotwords are given."""
        if beam_width is None:
            beam_width = DEFAULT_BEAM_WIDTH if options.get("lm") or options.get("hotwords") else 1
        return cls(beam_width=beam_width, **{k: v for k, v in options.items() if v is not None})

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
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        delimiter = tokenizer.word_delimiter_token
        hotwords = None
        if options.hotwords:
            hotwords = Hotwords.from_file(options.hotwords, options.hotword_weight, delimiter, tokenizer.tone_placement)
        scorer = None
        if options.lm or hotwords is not None:
            arpa = resolve_arpa(options.lm) if options.lm else None
            scorer = WordScorer(tokens, delimiter, arpa, options.lm_weight, options.word_score, hotwords)
        self._decoder = ctc_decoder(
            lexicon=None,
            tokens=tokens,
            lm=scorer,
            beam_size=options.beam_width,
            beam_size_token=min(options.token_beam, len(tokens)),
            beam_threshold=options.beam_threshold,
            lm_weight=1.0,  # the scorer applies the weights
            blank_token=tokenizer.pad_token,
            sil_token=delimiter,
            unk_word=tokenizer.unk_token,
        )

    def best_paths(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
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


def build_decoder(tokenizer: AI2TextTokenizer, options: DecodingOptions | None = None) -> CTCDecoder:
    """The decoder ``options`` ask for (greedy by default)."""
    options = options or DecodingOptions()
    if options.method == "greedy":
        return GreedyDecoder(tokenizer)
    return BeamSearchDecoder(tokenizer, options)
