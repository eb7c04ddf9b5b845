"""Processor bundling the feature extractor and the tokenizer (travels to the Hub with the model)."""

from __future__ import annotations

from transformers import ProcessorMixin


class AI2TextProcessor(ProcessorMixin):
    """Feature extractor for audio, tokenizer for text; ``processor(audio=..., text=...)`` gives both.

    Text given with audio becomes ``labels``, as in transformers' CTC processors.
    """

    def __init__(self, feature_extractor, tokenizer):
        super().__init__(feature_extractor, tokenizer)

    def __call__(self, audio=None, text=None, **kwargs):
        if audio is None and text is None:
            raise ValueError("Give `audio`, `text` or both.")
        sampling_rate = kwargs.pop("sampling_rate", None)
        inputs = self.feature_extractor(audio, sampling_rate=sampling_rate, **kwargs) if audio is not None else None
        if text is None:
            return inputs
        encodings = self.tokenizer(text)
        if inputs is None:
            return encodings
        inputs["labels"] = encodings["input_ids"]
        return inputs

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)
