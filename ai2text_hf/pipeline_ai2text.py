"""The ASR pipeline a model folder registers in its config.json (``custom_pipelines``): CTC decoding with the
folder's language model, for ``trust_remote_code`` loading without ai2text-hf::

    # pip install transformers torch torchaudio soundfile flashlight-text
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model="org/name", trust_remote_code=True)
    asr("speech.wav")                                   # beam search with language_model/ when the folder has one
    asr("speech.wav", return_timestamps="word")         # word timings in "chunks"
    pipeline(..., trust_remote_code=True, use_lm=False)  # greedy

With ``chunk_length_s``, a recording is first cut in its pauses and each part is read alone (a part still longer
than ``chunk_length_s`` in the parent's strided windows), as the model read single utterances in training: fixed
windows that straddle two voices cost accuracy (benchmarks/bench_long_audio.py).

This file travels with the model files and imports nothing of ai2text-hf (``language_model_ai2text.py`` and
``feature_extraction_ai2text.py`` travel beside it). Audio loading and the strided windows are the parent's.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio
from transformers import AutomaticSpeechRecognitionPipeline
from transformers.pipelines.audio_utils import ffmpeg_read

from .feature_extraction_ai2text import pause_segments
from .language_model_ai2text import LexiconFreeBeamSearch, find_language_model, lm_beam_search


def _hub_commit() -> str | None:
    """The Hub commit this file was loaded from (transformers keeps remote code in a folder named after it), so the
    LM comes from the model's revision; None when loaded from a local folder or the installed package."""
    name = Path(__file__).parent.name
    return name if re.fullmatch("[0-9a-f]{40}", name) else None


class AI2TextCTCPipeline(AutomaticSpeechRecognitionPipeline):
    """ASR pipeline for CTC models that decodes with the model folder's ``language_model/`` by default.

    Args:
        use_lm: decode with the folder's LM when it has one (beam search); False decodes greedily.
        beam_width: hypotheses kept per frame with the LM (default: the beam ``ai2text lm tune`` tuned it at, else 10).
        Every other argument is the parent's.
    """

    def __init__(self, *args, use_lm: bool = True, beam_width: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.type != "ctc":
            raise ValueError(f"{type(self).__name__} decodes CTC models, not {self.type} ones.")
        # The parent's forward keeps the logits (instead of their argmax) for this type; it also limits
        # timestamps to words, the unit decoding times.
        self.type = "ctc_with_lm"
        self.beam_search = self._beam_search(use_lm, beam_width)

    def _beam_search(self, use_lm: bool, beam_width: int | None) -> LexiconFreeBeamSearch | None:
        lm_dir = find_language_model(self.model.name_or_path, revision=_hub_commit()) if use_lm else None
        return lm_beam_search(self.tokenizer, lm_dir, beam_width) if lm_dir is not None else None

    def _waveform(self, inputs: Any) -> np.ndarray | None:
        """Mono samples at the feature extractor's rate of a file path, bytes, 1-D array or ``{"array"|"raw",
        "sampling_rate"}`` input; None for any other kind (URLs, strided dicts), which keeps the parent's windows."""
        rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, str) and not inputs.startswith(("http://", "https://")):
            inputs = Path(inputs).read_bytes()
        if isinstance(inputs, bytes):
            return ffmpeg_read(inputs, rate)
        in_rate = rate
        if isinstance(inputs, dict) and set(inputs) <= {"array", "raw", "sampling_rate", "path"}:
            in_rate, inputs = inputs.get("sampling_rate"), inputs.get("array", inputs.get("raw"))
        if isinstance(inputs, np.ndarray):
            inputs = torch.from_numpy(inputs)
        if not isinstance(inputs, torch.Tensor) or inputs.ndim != 1 or not in_rate:
            return None
        inputs = inputs.float().cpu()
        return (inputs if in_rate == rate else torchaudio.functional.resample(inputs, in_rate, rate)).numpy()

    def preprocess(self, inputs, chunk_length_s=0, stride_length_s=None) -> Iterator[dict]:
        waveform = self._waveform(inputs) if chunk_length_s else None
        if waveform is None:
            yield from super().preprocess(inputs, chunk_length_s, stride_length_s)
            return
        # Cuts on whole logit frames, so the parts' frames join without a gap or an overlap.
        previous = None
        for start, end in pause_segments(waveform, self.feature_extractor.sampling_rate, align=self._align_to):
            for item in super().preprocess(waveform[start:end], chunk_length_s, stride_length_s):
                if previous is not None:
                    yield {**previous, "is_last": False}  # the whole recording is one input of the pipeline
                previous = item
        if previous is not None:  # an empty recording yields nothing, as in the parent
            yield previous

    def _word_boundary(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` with the first frame made a certain word delimiter (same length: times stay put)."""
        boundary = torch.full_like(logits[:, :1], torch.finfo(logits.dtype).min)
        boundary[..., self.tokenizer.word_delimiter_token_id] = 0.0
        return torch.cat([boundary, logits[:, 1:]], dim=1)

    def decode_logits(self, logits: torch.Tensor, seconds_per_frame: float, word_timestamps: bool) -> dict:
        """``{"text"[, "chunks"]}`` of one utterance's ``(1, frames, vocab)`` logits."""
        log_probs = logits.detach().float().log_softmax(-1).cpu().contiguous()
        if self.beam_search is None:
            path = log_probs[0].argmax(-1)
        else:
            (path,) = self.beam_search.best_paths(log_probs, torch.tensor([log_probs.shape[1]]))
        if not word_timestamps:
            return {"text": self.tokenizer.decode(path.tolist())}
        decoded = self.tokenizer.decode(path.tolist(), output_word_offsets=True)
        chunks = [
            {
                "text": w["word"],
                "timestamp": (
                    round(float(w["start_offset"] * seconds_per_frame), 3),
                    round(float(w["end_offset"] * seconds_per_frame), 3),
                ),
            }
            for w in decoded["word_offsets"]
        ]
        return {"text": decoded["text"], "chunks": chunks}

    def postprocess(self, model_outputs, decoder_kwargs=None, return_timestamps=None, return_language=None):
        pieces, extra = [], defaultdict(list)
        for output in model_outputs:
            logits = output.pop("logits")
            stride = output.pop("stride", None)
            if stride is not None:  # chunked audio: keep each chunk's frames outside its overlaps
                total, left, right = stride
                logits = logits[:, left : total - right]
                # A new part, cut mid-pause (preprocess): a pause may hold only blanks, which would join the words
                # on either side, so its silent first frame becomes a word delimiter.
                if pieces and left == 0:
                    logits = self._word_boundary(logits)
            pieces.append(logits)
            output.pop("is_last", None)
            for key, value in output.items():
                extra[key].append(value)
        seconds_per_frame = self._align_to / self.feature_extractor.sampling_rate
        logits = torch.cat(pieces, dim=1)
        result: dict[str, Any] = self.decode_logits(logits, seconds_per_frame, bool(return_timestamps))
        return {**result, **extra}
