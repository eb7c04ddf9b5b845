"""Log-mel feature extractor for the AI2Text CTC encoder.

Travels to the Hub next to the weights, so it imports only numpy, torch, torchaudio and transformers.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import TensorType, logging

logger = logging.get_logger(__name__)


class AI2TextFeatureExtractor(SequenceFeatureExtractor):
    """80-bin log-mel filterbank with per-utterance mean/variance normalisation.

    Frames are 25 ms (``n_fft`` = ``win_length`` = 400 samples at 16 kHz) every 10 ms. The STFT is
    centred with *zero* padding, so an utterance padded inside a batch gets exactly the features it
    gets alone: the frames past its end see zeros either way. Everything is one batched
    ``torch.stft`` call, no per-frame Python.

    Args:
        feature_size: number of mel bins.
        sampling_rate: the only rate accepted; resample audio before calling.
        n_fft / win_length / hop_length: STFT geometry in samples.
        f_min / f_max: mel filterbank range in Hz.
        normalize: ``"utterance"`` (zero mean, unit variance per bin over the utterance) or ``"none"``.
        log_floor: floor added before the log so digital silence stays finite.
    """

    model_input_names = ["input_features", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 80,
        sampling_rate: int = 16000,
        padding_value: float = 0.0,
        n_fft: int = 400,
        win_length: int = 400,
        hop_length: int = 160,
        f_min: float = 0.0,
        f_max: float | None = None,
        normalize: str = "utterance",
        log_floor: float = 1e-6,
        return_attention_mask: bool = True,
        **kwargs,
    ):
        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=padding_value,
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        if normalize not in ("utterance", "none"):
            raise ValueError(f"normalize must be 'utterance' or 'none', got {normalize!r}")
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.f_min = f_min
        self.f_max = f_max if f_max is not None else sampling_rate / 2
        self.normalize = normalize
        self.log_floor = log_floor
        self._window = torch.hann_window(win_length)
        self._mel = torchaudio.functional.melscale_fbanks(
            n_freqs=n_fft // 2 + 1,
            f_min=f_min,
            f_max=self.f_max,
            n_mels=feature_size,
            sample_rate=sampling_rate,
            norm="slaney",
            mel_scale="slaney",
        )

    def to_dict(self) -> dict:
        """Serialise the settings only: the window and filterbank are rebuilt from them."""
        output = super().to_dict()
        output.pop("_window", None)
        output.pop("_mel", None)
        return output

    def num_frames(self, num_samples: int | np.ndarray) -> int | np.ndarray:
        """Frames produced for ``num_samples`` samples (centred STFT)."""
        return num_samples // self.hop_length + 1

    def _extract(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched log-mel of zero-padded waveforms (batch, samples) → (batch, frames, mels), mask."""
        spec = torch.stft(
            waveforms,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self._window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (batch, freqs, frames)
        mel = torch.matmul(power.transpose(1, 2), self._mel)  # (batch, frames, mels)
        features = torch.log(mel + self.log_floor)
        frame_lengths = lengths // self.hop_length + 1
        mask = torch.arange(features.shape[1])[None, :] < frame_lengths[:, None]
        if self.normalize == "utterance":
            weights = mask.unsqueeze(-1).to(features.dtype)
            counts = frame_lengths.clamp(min=1)[:, None, None].to(features.dtype)
            mean = (features * weights).sum(1, keepdim=True) / counts
            var = ((features - mean).square() * weights).sum(1, keepdim=True) / counts
            features = (features - mean) * torch.rsqrt(var + 1e-5)
        features = features.masked_fill(~mask.unsqueeze(-1), self.padding_value)
        return features, mask

    def __call__(
        self,
        raw_speech: np.ndarray | list[float] | list[np.ndarray] | torch.Tensor,
        sampling_rate: int | None = None,
        padding: bool | str = "longest",
        return_tensors: str | TensorType | None = None,
        return_attention_mask: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Featurise one waveform or a batch of them (mono float, at ``self.sampling_rate``).

        With ``padding=False`` the features come back unpadded, one (frames, mels) array each, which
        is what dataset preparation stores.
        """
        if sampling_rate is None:
            logger.warning(
                "AI2TextFeatureExtractor was called without `sampling_rate`; pass it so a wrong rate "
                f"is caught. Assuming {self.sampling_rate} Hz."
            )
        elif sampling_rate != self.sampling_rate:
            raise ValueError(
                f"Audio at {sampling_rate} Hz given, but this model expects {self.sampling_rate} Hz. "
                f"Resample first, e.g. librosa.resample(audio, orig_sr={sampling_rate}, "
                f"target_sr={self.sampling_rate}), or use ai2text_hf.data.load_audio which resamples."
            )
        batched = isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0 and not np.isscalar(raw_speech[0])
        if isinstance(raw_speech, (np.ndarray, torch.Tensor)) and raw_speech.ndim == 2:
            batched, raw_speech = True, list(raw_speech)
        if not batched:
            raw_speech = [raw_speech]
        # Writable copies only where needed: the ASR pipeline hands over read-only buffers (np.frombuffer).
        waves = [torch.as_tensor(np.require(x, np.float32, "W")).reshape(-1) for x in raw_speech]
        for index, wave in enumerate(waves):
            if wave.numel() == 0:
                raise ValueError(f"Audio input {index} is empty: nothing to transcribe.")
        lengths = torch.tensor([w.numel() for w in waves])
        padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
        with torch.inference_mode():
            features, mask = self._extract(padded, lengths)
        if return_attention_mask is None:
            return_attention_mask = self.return_attention_mask
        if not padding:
            frame_lengths = mask.sum(1).tolist()
            data = {"input_features": [f[:n].numpy() for f, n in zip(features, frame_lengths)]}
            return BatchFeature(data, tensor_type=None)
        data = {"input_features": features.numpy()}
        if return_attention_mask:
            data["attention_mask"] = mask.to(torch.int32).numpy()
        return BatchFeature(data, tensor_type=return_tensors)
