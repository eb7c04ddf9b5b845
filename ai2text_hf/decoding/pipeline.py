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

Everything before decoding (audio loading, resampling, chunking with strides) is the parent's.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
from transformers import AutomaticSpeechRecognitionPipeline, pipeline

from .beam import DecodingOptions, build_decoder


class AI2TextASRPipeline(AutomaticSpeechRecognitionPipeline):
    """ASR pipeline for CTC models whose postprocessing decodes logits with :func:`build_decoder`.

    Args:
        decoding: decoding options (greedy when omitted); every other argument is the parent's.
    """

    def __init__(self, *args, decoding: DecodingOptions | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.type != "ctc":
            raise ValueError(f"{type(self).__name__} decodes CTC models, not {self.type} ones.")
        # The parent's forward keeps the logits (instead of their argmax) for this type; it also limits
        # timestamps to words, the unit our decoders time.
        self.type = "ctc_with_lm"
        self.decoding = decoding or DecodingOptions()
        self.ctc_decoder = build_decoder(self.tokenizer, self.decoding)

    def postprocess(self, model_outputs, decoder_kwargs=None, return_timestamps=None, return_language=None):
        pieces, extra = [], defaultdict(list)
        for output in model_outputs:
            logits = output.pop("logits")
            stride = output.pop("stride", None)
            if stride is not None:  # chunked audio: keep each chunk's frames outside its overlaps
                total, left, right = stride
                logits = logits[:, left : total - right]
            pieces.append(logits)
            output.pop("is_last", None)
            for key, value in output.items():
                extra[key].append(value)
        logits = torch.cat(pieces, dim=1)
        seconds_per_frame = self._align_to / self.feature_extractor.sampling_rate
        utterance = self.ctc_decoder.decode(
            logits, torch.tensor([logits.shape[1]]), seconds_per_frame, word_timestamps=bool(return_timestamps)
        )[0]
        result = {"text": utterance.text, "confidence": utterance.confidence}
        if return_timestamps:
            result["chunks"] = [
                {"text": w["word"], "timestamp": (w["start"], w["end"]), "confidence": w["confidence"]}
                for w in utterance.words
            ]
        return {**result, **extra}


def asr_pipeline(model_dir: str | Path, decoding: DecodingOptions | None = None, **kwargs) -> AI2TextASRPipeline:
    """``transformers.pipeline`` for a model folder with :class:`AI2TextASRPipeline` (kwargs go to ``pipeline``)."""
    return pipeline(
        "automatic-speech-recognition",
        model=str(model_dir),
        pipeline_class=AI2TextASRPipeline,
        decoding=decoding,
        **kwargs,
    )
