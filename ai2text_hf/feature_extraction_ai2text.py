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

PITCH_FEATURES = 3  # voicing, normalised log-F0, its slope
# Octaves → roughly unit-variance columns on the demo corpus (its spread: docs/results.md), like the
# normalised mel bins beside them.
PITCH_SCALE = 5.0
SLOPE_SCALE = 30.0
# Seconds of the sliding window the log-F0 is centred on (Kaldi's 1.5 s): against the whole input, a little
# worse on single utterances and much better on recordings whose speaker changes (docs/results.md).
PITCH_NORM_WINDOW = 1.5
# A centring window with fewer voiced frames than this is topped up with the whole input's mean: one
# short syllable alone would otherwise be centred on itself and lose its tone.
PITCH_MIN_VOICED_FRAMES = 30.0
# Long recordings are cut in pauses at least this long, whose 30 ms frames lie this far below the recording's
# loud level (its 95th percentile frame): each part is then normalised (and attended over) alone, as the single
# utterances of training were (benchmarks/bench_long_audio.py measures the effect).
PAUSE_SECONDS = 0.25
PAUSE_DB = 30.0
# Seconds of past frames whose mean and variance ``normalize="causal"`` uses (Kaldi's online CMVN window: 6 s).
CAUSAL_NORM_WINDOW = 6.0


def pause_segments(
    waveform: np.ndarray,
    sampling_rate: int,
    min_pause: float = PAUSE_SECONDS,
    quiet_db: float = PAUSE_DB,
    align: int = 1,
) -> list[tuple[int, int]]:
    """``(start, end)`` sample ranges that tile ``waveform``, cut in the middle of every pause of ``min_pause``
    seconds or more (frames ``quiet_db`` below the loud level); one range when there is no pause. ``align``: cuts
    rounded down to multiples of it (a model's samples per output frame: the parts' frames then tile the input's)."""
    hop = sampling_rate // 100
    wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
    blocks = len(wave) // hop
    if blocks < 3:
        return [(0, len(wave))]
    framed = wave[: blocks * hop].reshape(blocks, hop)  # 10 ms blocks, a view: an hour costs no copy
    block_power = np.einsum("ij,ij->i", framed, framed) / hop
    energy = 10 * np.log10(np.convolve(block_power.astype(np.float64), np.ones(3) / 3, mode="same") + 1e-12)
    quiet = energy < np.percentile(energy, 95) - quiet_db
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    starts, ends = edges[::2], edges[1::2]
    cuts = ((starts + ends) // 2 * hop)[(ends - starts) * hop >= min_pause * sampling_rate] // align * align
    bounds = [0, *sorted({int(c) for c in cuts if 0 < c < len(wave)}), len(wave)]
    return list(zip(bounds[:-1], bounds[1:]))


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
        normalize: ``"utterance"`` (zero mean, unit variance per bin over the utterance), ``"causal"`` (over
            the past ``causal_norm_window`` seconds up to each frame: computable while the audio streams in) or
            ``"none"``.
        causal_norm_window: seconds of past frames ``normalize="causal"`` reads.
        log_floor: floor added before the log so digital silence stays finite.
        pitch: append three pitch columns per frame after the mel bins (see ``_pitch``). A 25 ms
            window cannot resolve the harmonics of a low voice (its spectral lobes are ~160 Hz wide), so
            log-mels carry little of the pitch contour that tells Vietnamese tones apart.
        pitch_norm_window: seconds of the sliding window whose voiced mean the log-F0 is centred on
            (Kaldi's 1.5 s), so a long input that changes speaker keeps each voice's contour centred;
            ``None`` centres on the whole input's mean (what pitch models saved before this key used).
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
        pitch: bool = False,
        pitch_norm_window: float | None = PITCH_NORM_WINDOW,
        causal_norm_window: float = CAUSAL_NORM_WINDOW,
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
        if normalize not in ("utterance", "causal", "none"):
            raise ValueError(f"normalize must be 'utterance', 'causal' or 'none', got {normalize!r}")
        if not causal_norm_window > 0:
            raise ValueError(f"causal_norm_window must be a positive number of seconds, got {causal_norm_window!r}")
        if pitch_norm_window is not None and not pitch_norm_window > 0:
            raise ValueError(
                f"pitch_norm_window must be a positive number of seconds, or None (0 with `ai2text prepare "
                f"--pitch-norm-window`) for the whole utterance; got {pitch_norm_window!r}"
            )
        self.n_fft = n_fft
        self.win_length = win_length
        self.hop_length = hop_length
        self.f_min = f_min
        self.f_max = f_max if f_max is not None else sampling_rate / 2
        self.normalize = normalize
        self.log_floor = log_floor
        self.pitch = pitch
        self.pitch_norm_window = pitch_norm_window
        self.causal_norm_window = causal_norm_window
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

    @classmethod
    def from_dict(cls, feature_extractor_dict: dict, **kwargs):
        """Settings saved with pitch before ``pitch_norm_window`` existed centred on the whole input: keep that."""
        if feature_extractor_dict.get("pitch") and "pitch_norm_window" not in feature_extractor_dict:
            feature_extractor_dict = {**feature_extractor_dict, "pitch_norm_window": None}
        return super().from_dict(feature_extractor_dict, **kwargs)

    def to_dict(self) -> dict:
        """Serialise the settings only: the window and filterbank are rebuilt from them."""
        output = super().to_dict()
        output.pop("_window", None)
        output.pop("_mel", None)
        return output

    @property
    def feature_dim(self) -> int:
        """Columns per frame: the mel bins, plus the pitch columns when ``pitch`` is on."""
        return self.feature_size + (PITCH_FEATURES if self.pitch else 0)

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
        features = self.log_mel(spec)
        frame_lengths = lengths // self.hop_length + 1
        mask = torch.arange(features.shape[1])[None, :] < frame_lengths[:, None]
        if self.normalize == "causal":
            # Frames past an utterance's end come after all its frames, so they never enter its statistics.
            features = self.causal_normalize(features, features[:, :0])
        elif self.normalize == "utterance":
            weights = mask.unsqueeze(-1).to(features.dtype)
            counts = frame_lengths.clamp(min=1)[:, None, None].to(features.dtype)
            mean = (features * weights).sum(1, keepdim=True) / counts
            var = ((features - mean).square() * weights).sum(1, keepdim=True) / counts
            features = (features - mean) * torch.rsqrt(var + 1e-5)
        if self.pitch:
            features = torch.cat([features, self._pitch(waveforms, mask)], dim=-1)
        features = features.masked_fill(~mask.unsqueeze(-1), self.padding_value)
        return features, mask

    def log_mel(self, spec: torch.Tensor) -> torch.Tensor:
        """Log-mel frames (batch, frames, mels) of an STFT (batch, freqs, frames)."""
        power = spec.real.square() + spec.imag.square()
        return torch.log(torch.matmul(power.transpose(1, 2), self._mel) + self.log_floor)

    @property
    def causal_norm_frames(self) -> int:
        """Frames ``normalize="causal"`` averages over: the current one and those before it in the window."""
        return max(1, round(self.causal_norm_window * self.sampling_rate / self.hop_length))

    def causal_normalize(self, features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """``features`` (batch, frames, mels) normalised on the mean and variance of each frame's window of past
        frames; ``history``: the log-mel frames before them (up to ``causal_norm_frames - 1``; a stream keeps them),
        none at the start. Sums in float64: a cumulative sum over an hour of frames would lose float32 precision.

        The first frame's window is summed directly and each later one by the frame that enters it minus the one
        that leaves: a stream's step then reads its history once instead of summing it cumulatively."""
        if not features.shape[1]:
            return features
        frames = torch.cat([history, features], dim=1).double()
        values = torch.cat([frames, frames.square()], dim=-1)
        window, past = self.causal_norm_frames, history.shape[1]
        ends = torch.arange(past, frames.shape[1]) + 1
        starts = (ends - window).clamp(min=0)
        first = values[:, int(starts[0]) : int(ends[0])].sum(1, keepdim=True)
        left = (starts[1:] > starts[:-1]).to(frames.dtype)[None, :, None]  # a frame leaves the window
        moved = values[:, ends[1:] - 1] - values[:, starts[:-1]] * left
        totals = torch.cat([first, first + moved.cumsum(1)], dim=1)
        counts = (ends - starts).to(frames.dtype)[None, :, None]
        mean, square = (totals / counts).split(features.shape[-1], dim=-1)
        var = (square - mean.square()).clamp(min=0.0)
        return ((frames[:, past:] - mean) * torch.rsqrt(var + 1e-5)).to(features.dtype)

    def _pitch(self, waveforms: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-frame voicing, normalised log2-F0 and its slope, (batch, frames, 3), by autocorrelation.

        Boersma's (1993) method, vectorised: each 40 ms Hann-windowed frame's autocorrelation (via FFT)
        is divided by the window's own, the best lag in 50-400 Hz wins with an octave cost against
        sub-harmonics, and its normalised height is the voicing strength. The log-F0 is median-filtered
        over 5 frames, held through unvoiced frames, and centred on the voiced mean around each frame
        (``pitch_norm_window``), so a high and a low voice saying the same tone give the same contour.
        """
        # Pitch lives below 400 Hz: averaging sample pairs (a 2-tap low-pass) and halving the rate halves
        # every transform below; frame centres and counts stay those of the mel features.
        factor = 2 if self.hop_length % 2 == 0 else 1
        usable = waveforms.shape[1] // factor * factor
        waveforms = waveforms[:, :usable].reshape(waveforms.shape[0], -1, factor).mean(-1)
        rate, hop = self.sampling_rate // factor, self.hop_length // factor
        win = int(0.04 * rate)
        min_lag, max_lag = int(rate / 400), int(rate / 50)
        n_fft = 1 << (win + max_lag).bit_length()
        window = torch.hann_window(win, periodic=False, dtype=waveforms.dtype)
        # One STFT frames, windows and transforms (zero-padded centring, as the mel features); bin 0 out
        # removes each frame's DC. The power spectrum's inverse FFT is the autocorrelation.
        spectrum = torch.stft(
            waveforms,
            n_fft=n_fft,
            hop_length=hop,
            win_length=win,
            window=window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        power = spectrum.real.square() + spectrum.imag.square()
        power[:, 0] = 0.0
        acf = torch.fft.irfft(power.transpose(1, 2), n=n_fft)[..., : max_lag + 2]
        window_acf = torch.fft.irfft(torch.fft.rfft(window, n=n_fft).abs().square(), n=n_fft)[: max_lag + 2]
        frames = mask.shape[1]
        energy = acf[..., 0]
        norm_acf = acf / energy.clamp(min=1e-12).unsqueeze(-1) / (window_acf / window_acf[0])
        lags = torch.arange(min_lag, max_lag + 1, dtype=waveforms.dtype)
        candidates = norm_acf[..., min_lag : max_lag + 1]
        best = (candidates - 0.1 * torch.log2(lags * 50.0 / rate)).argmax(-1)
        voicing = candidates.gather(-1, best.unsqueeze(-1)).squeeze(-1).clamp(0.0, 1.0)
        # Frames 40 dB below the utterance's loudest are silence, whatever their autocorrelation says.
        loudest = energy.masked_fill(~mask, 0.0).amax(1, keepdim=True)
        voicing = voicing.masked_fill(energy < 1e-4 * loudest, 0.0)
        # Parabolic interpolation around the best lag: sub-sample F0 precision.
        lag = (best + min_lag).clamp(min_lag + 1, max_lag)
        below, peak, above = (norm_acf.gather(-1, (lag + k).unsqueeze(-1)).squeeze(-1) for k in (-1, 0, 1))
        curvature = below - 2 * peak + above
        shift = torch.where(curvature.abs() > 1e-6, 0.5 * (below - above) / curvature, torch.zeros_like(peak))
        log_f0 = torch.log2(rate / (lag + shift.clamp(-1.0, 1.0)))
        log_f0 = torch.nn.functional.pad(log_f0, (2, 2), mode="replicate").unfold(1, 5, 1).median(-1).values
        voiced = (voicing > 0.5) & mask
        # Octave errors (a sub- or super-harmonic won) lie far from the typical pitch around them: drop them.
        # Around them, not over the whole input: two voices an octave apart would otherwise lose one.
        candidates = torch.where(voiced, log_f0, float("nan"))
        half = self._half_window()
        if half is None:
            typical = candidates.nanmedian(1, keepdim=True).values
        else:
            # The window's median every 10th frame (each frame takes the nearest): a tenth of the sorting, and
            # 0.1 s steps are fine enough to tell a voice from its octave.
            step = 10
            padded = torch.nn.functional.pad(candidates, (half, half + step), value=float("nan"))
            coarse = padded.unfold(1, 2 * half + 1, step).nanmedian(-1).values
            typical = coarse[:, (torch.arange(frames) + step // 2) // step]
        voiced &= (log_f0 - typical).abs() < 0.7
        weights = voiced.to(log_f0.dtype)
        mean = (log_f0 * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1.0)
        if half is not None:
            mean = self._windowed_mean(log_f0, weights, mean, half)
        index = torch.arange(frames).expand_as(log_f0)
        last_voiced = torch.where(voiced, index, -1).cummax(1).values
        held = torch.where(last_voiced >= 0, log_f0.gather(1, last_voiced.clamp(min=0)), mean) - mean
        # Past an utterance's end the windowed mean drifts: repeat its last frame so the slope there is the
        # one it gets alone (replicate padding).
        held = held.gather(1, torch.minimum(index, (mask.sum(1, keepdim=True) - 1).clamp(min=0)))
        slope = torch.nn.functional.pad(held, (1, 1), mode="replicate")
        slope = (slope[:, 2:] - slope[:, :-2]) / 2
        return torch.stack([voicing, PITCH_SCALE * held, SLOPE_SCALE * slope], dim=-1)

    def _half_window(self) -> int | None:
        """Frames on each side of a frame in ``pitch_norm_window``; None: centre on the whole input."""
        if self.pitch_norm_window is None:
            return None
        return max(1, round(self.pitch_norm_window * self.sampling_rate / self.hop_length / 2))

    def _windowed_mean(
        self, log_f0: torch.Tensor, weights: torch.Tensor, overall: torch.Tensor, half: int
    ) -> torch.Tensor:
        """Voiced mean of the log-F0 in a window centred on each frame, (batch, frames).

        ``half``: frames on each side (``_half_window``). Window sums by average pooling (each one summed
        directly: a running cumsum over an hour of frames would lose float32 precision). Windows with fewer
        than ``PITCH_MIN_VOICED_FRAMES`` voiced frames are topped up with the ``overall`` mean.
        """
        size = 2 * half + 1
        pooled = torch.nn.functional.avg_pool1d(
            torch.stack([log_f0 * weights, weights], dim=1), size, stride=1, padding=half, count_include_pad=True
        )
        sums, counts = pooled[:, 0] * size, pooled[:, 1] * size
        shortfall = (PITCH_MIN_VOICED_FRAMES - counts).clamp(min=0.0)
        return (sums + shortfall * overall) / (counts + shortfall)

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
