"""``transformers.pipeline("automatic-speech-recognition")`` with our decoding: greedy or beam search with
an n-gram LM and hotwords, plus confidences.

transformers 5 still takes a pyctcdecode ``decoder=`` but marks it for removal in v6, so the decoding
lives in a pipeline subclass passed as ``pipeline_class=`` (the model files stay free of it)::

    from transformers import pipeline
    from ai2text_hf.decoding import DecodingOptions
    from ai2text_hf.decoding.pipeline import AI2TextASRPipeline

    asr = pipeline("automatic-speech-recognition", model="runs/demo/model", pipeline_class=AI2TextASRPipeline,
                   decoding=DecodingOptions(beam_width=10, lm="lm/vi-3gram", hotwords="names.txt"))
    asr("audio.wav", return_timestamps="word")
    # {"text", "confidence", "chunks": [{"text", "timestamp", "confidence"}]}

Without ``decoding`` it decodes like the model folder's own pipeline (``pipeline_ai2text.py``, what
``trust_remote_code=True`` loads): with the folder's ``language_model/`` when it has one, else greedily.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import pipeline

from ..language_model_ai2text import find_language_model
from ..pipeline_ai2text import AI2TextCTCPipeline
from .beam import DecodingOptions, build_decoder
from .core import CTCDecoder


class AI2TextASRPipeline(AI2TextCTCPipeline):
    """The model folder's ASR pipeline decoding with :func:`build_decoder`, which adds hotwords and confidences.

    Args:
        decoding: decoding options (default: the folder's LM when it has one, as :meth:`DecodingOptions.for_model`
            picks it, greedy with ``use_lm=False``); every other argument is :class:`AI2TextCTCPipeline`'s.
    """

    def __init__(self, *args, decoding: DecodingOptions | None = None, **kwargs):
        self.decoding = decoding
        super().__init__(*args, **kwargs)

    def _beam_search(self, use_lm: bool, beam_width: int | None) -> CTCDecoder:
        if self.decoding is None:  # the folder's LM, from a local folder or the Hub, as the parent finds it
            lm_dir = find_language_model(self.model.name_or_path) if use_lm else None
            self.decoding = DecodingOptions.create(beam_width, lm=str(lm_dir) if lm_dir else None)
        self.ctc_decoder = build_decoder(self.tokenizer, self.decoding)
        return self.ctc_decoder

    def decode_logits(self, logits: torch.Tensor, seconds_per_frame: float, word_timestamps: bool) -> dict:
        utterance = self.ctc_decoder.decode(
            logits, torch.tensor([logits.shape[1]]), seconds_per_frame, word_timestamps
        )[0]
        result = {"text": utterance.text, "confidence": utterance.confidence}
        if word_timestamps:
            result["chunks"] = [
                {"text": w["word"], "timestamp": (w["start"], w["end"]), "confidence": w["confidence"]}
                for w in utterance.words
            ]
        return result


def asr_pipeline(model_dir: str | Path, decoding: DecodingOptions | None = None, **kwargs) -> AI2TextASRPipeline:
    """``transformers.pipeline`` for a model folder with :class:`AI2TextASRPipeline` (kwargs go to ``pipeline``)."""
    return pipeline(
        "automatic-speech-recognition",
        model=str(model_dir),
        pipeline_class=AI2TextASRPipeline,
        decoding=decoding,
        **kwargs,
    )
