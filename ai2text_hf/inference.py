"""Transcribing audio files and feature batches with a trained model folder.

Files are decoded by our own loader (soundfile + soxr), not ffmpeg, so the CLI needs no external
binary and resampling is the same as in data preparation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .data.audio import load_audio
from .data.sampler import DurationBatchSampler
from .decoding import CTCDecoder, DecodedUtterance, DecodingOptions, build_decoder
from .feature_extraction_ai2text import AI2TextFeatureExtractor
from .onnx_model import load_ctc_model
from .tokenization_ai2text import AI2TextTokenizer


def duration_batches(durations: Sequence[float], max_batch_seconds: float) -> Iterator[list[int]]:
    """Indices grouped by similar duration so long and short inputs don't pad each other.

    The training sampler's packing without shuffling; an input longer than the budget gets a batch of its own.
    """
    if not len(durations):
        return iter(())
    budget = max(max_batch_seconds, float(max(durations)))
    return iter(DurationBatchSampler(durations, budget, shuffle=False))


class Transcriber:
    """A loaded model folder: transcription with word timestamps and confidences.

    Args:
        model_dir: a folder written by training (``runs/<name>/model``), ``save_pretrained`` or ``ai2text export``.
        device: torch device; CUDA when available by default.
        max_batch_seconds: audio per forward pass when transcribing many inputs.
        decoding: greedy (the default) or beam search with an LM and hotwords.
        chunk_seconds: longer inputs run through the encoder in windows of this length (attention and
            activations grow with the input; the logits do not need to), and their logits are stitched.
        stride_seconds: context added on each side of a window and dropped from its logits, so every
            kept frame saw enough audio around it.
    """

    def __init__(
        self,
        model_dir: str | Path,
        device: str | None = None,
        max_batch_seconds: float = 240.0,
        decoding: DecodingOptions | None = None,
        chunk_seconds: float = 30.0,
        stride_seconds: float = 4.0,
    ):
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(
                f"{model_dir} is not a model folder (no config.json). Point --model at runs/<name>/model."
            )
        self.model_dir = model_dir
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_ctc_model(model_dir, self.device)  # an exported folder runs on onnxruntime
        self.feature_extractor = AI2TextFeatureExtractor.from_pretrained(str(model_dir))
        self.tokenizer = AI2TextTokenizer.from_pretrained(str(model_dir))
        self.max_batch_seconds = max_batch_seconds
        self.seconds_per_frame = self.model.config.inputs_to_logits_ratio / self.feature_extractor.sampling_rate
        self.decoding = decoding or DecodingOptions()
        self.decoder = build_decoder(self.tokenizer, self.decoding)
        if not 0 <= 2 * stride_seconds < chunk_seconds:
            raise ValueError(f"stride_seconds ({stride_seconds}) must be under half of chunk_seconds ({chunk_seconds})")
        self.chunk_seconds = chunk_seconds
        self.stride_seconds = stride_seconds

    @torch.inference_mode()
    def logits(self, features: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (batch, frames, vocab) of one padded batch of unpadded (frames, mels) feature arrays, and the
        number of valid logit frames of each."""
        tensors = [torch.tensor(np.asarray(f, dtype=np.float32)) for f in features]
        lengths = torch.tensor([t.shape[0] for t in tensors])
        batch = torch.nn.utils.rnn.pad_sequence(
            tensors, batch_first=True, padding_value=self.feature_extractor.padding_value
        )
        mask = torch.arange(batch.shape[1])[None, :] < lengths[:, None]
        logits = self.model(input_features=batch.to(self.device), attention_mask=mask.to(self.device)).logits
        return logits, self.model._get_feat_extract_output_lengths(lengths)

    def decode_features(
        self, features: Sequence[np.ndarray], word_timestamps: bool = True, decoder: CTCDecoder | None = None
    ) -> list[DecodedUtterance]:
        """Decode one batch of unpadded (frames, mels) feature arrays, with ``decoder`` instead of our own if given
        (a server shares one model between requests that ask for different decoding)."""
        logits, out_lengths = self.logits(features)
        return (decoder or self.decoder).decode(logits, out_lengths, self.seconds_per_frame, word_timestamps)

    def _windows(self, num_samples: int) -> list[tuple[int, int, int, int]]:
        """``(start, end, keep_from, keep_to)`` sample positions: each window reads ``[start, end)`` and
        contributes the logits of ``[keep_from, keep_to)``; the kept parts tile the input without overlap."""
        sr = self.feature_extractor.sampling_rate
        step = int((self.chunk_seconds - 2 * self.stride_seconds) * sr)
        stride = int(self.stride_seconds * sr)
        return [
            (max(0, keep - stride), min(num_samples, keep + step + stride), keep, min(num_samples, keep + step))
            for keep in range(0, num_samples, step)
        ]

    def _long_logits(self, waveform: np.ndarray) -> torch.Tensor:
        """Logits of one long input, computed window by window and stitched at frame boundaries."""
        sr = self.feature_extractor.sampling_rate
        samples_per_frame = self.model.config.inputs_to_logits_ratio
        windows = self._windows(len(waveform))
        pieces: list[torch.Tensor | None] = [None] * len(windows)
        durations = [(end - start) / sr for start, end, _, _ in windows]
        # Two windows per forward pass: bigger batches barely run faster on CPU but raise the peak memory of an
        # hour-long file by ~0.3 GB (measured with bench_long_audio: 1.28 GB vs 1.55 GB with 240 s batches).
        for batch in duration_batches(durations, min(self.max_batch_seconds, 2 * self.chunk_seconds)):
            chunks = [waveform[windows[i][0] : windows[i][1]] for i in batch]
            features = self.feature_extractor(chunks, sampling_rate=sr, padding=False)["input_features"]
            logits, lengths = self.logits(features)
            for row, index in enumerate(batch):
                start, _, keep_from, keep_to = windows[index]
                first = round((keep_from - start) / samples_per_frame)
                last = min(int(lengths[row]), round((keep_to - start) / samples_per_frame))
                pieces[index] = torch.as_tensor(logits[row, first:last]).float().cpu()
        return torch.cat(pieces)  # type: ignore[arg-type]

    def transcribe_arrays(
        self, waveforms: Sequence[np.ndarray], word_timestamps: bool = True, decoder: CTCDecoder | None = None
    ) -> list[DecodedUtterance]:
        """Transcribe 16 kHz mono float waveforms, batched by duration; inputs longer than ``chunk_seconds`` in
        stitched windows (``decoder`` as in :meth:`decode_features`)."""
        sr = self.feature_extractor.sampling_rate
        durations = [len(w) / sr for w in waveforms]
        results: list[DecodedUtterance | None] = [None] * len(waveforms)
        short = [i for i, d in enumerate(durations) if d <= self.chunk_seconds]
        for batch in duration_batches([durations[i] for i in short], self.max_batch_seconds):
            indices = [short[i] for i in batch]
            features = self.feature_extractor([waveforms[i] for i in indices], sampling_rate=sr, padding=False)
            decoded_batch = self.decode_features(features["input_features"], word_timestamps, decoder)
            for index, decoded in zip(indices, decoded_batch):
                results[index] = decoded
        for index in (i for i, d in enumerate(durations) if d > self.chunk_seconds):
            logits = self._long_logits(waveforms[index])
            (results[index],) = (decoder or self.decoder).decode(
                logits[None], torch.tensor([len(logits)]), self.seconds_per_frame, word_timestamps
            )
        return results  # type: ignore[return-value]

    def transcribe_batch(self, files: Sequence[str | Path], word_timestamps: bool = True) -> list[dict]:
        """``[{"file", "text", "confidence", "duration", "words": [{"word", "start", "end", "confidence"}]}]``,
        one per file, in the order given (files are batched by duration internally)."""
        waveforms = [load_audio(f, self.feature_extractor.sampling_rate)[0] for f in files]
        decoded = self.transcribe_arrays(waveforms, word_timestamps)
        sr = self.feature_extractor.sampling_rate
        return [
            {
                "file": str(f),
                "text": d.text,
                "confidence": round(d.confidence, 4),
                "duration": round(len(w) / sr, 3),
                "words": d.words,
            }
            for f, w, d in zip(files, waveforms, decoded)
        ]
