"""Audio decoding for data preparation and inference: any file soundfile reads → 16 kHz mono float32.

We decode ourselves instead of using ``datasets.Audio``: in datasets 5 that feature decodes (and even
encodes) through torchcodec and the FFmpeg shared libraries, a heavy dependency we do not need for
WAV/FLAC/OGG/MP3, which libsndfile (≥ 1.1 reads MP3) handles directly and, for WAV/FLAC, faster. A source
is a file path or the file's bytes (audio embedded in a Hugging Face dataset); both decode the same way.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile as sf
import soxr

if TYPE_CHECKING:  # decoding needs no torch; only featurize_batch's caller brings the extractor
    from ..feature_extraction_ai2text import AI2TextFeatureExtractor

#: Stable reason codes, shared with the preparation report.
MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
UNDECODABLE_FILE = "undecodable_file"

#: A sample at or above this magnitude is at full scale: the largest 16-bit value reads as 32767/32768.
FULL_SCALE = 32767 / 32768

AudioSource = str | os.PathLike | bytes


class AudioDecodeError(Exception):
    """An unusable audio file; ``reason`` is a stable code for reports, the message says the fix."""

    def __init__(self, path: str | os.PathLike, reason: str, message: str):
        super().__init__(message)
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    """Header facts about an audio file, read without decoding the samples."""

    duration: float
    sample_rate: int
    channels: int
    frames: int


@dataclass(frozen=True)
class DecodedAudio:
    """A decoded source: the model-rate waveform plus what the quality checks need from the original."""

    wave: np.ndarray  # mono float32 in [-1, 1] at the requested rate
    duration: float  # seconds, of the source
    clipped_share: float  # share of source frames with a channel at full scale (before resampling hides it)


def _check_exists(path: Path) -> None:
    """Catch the two cheapest failures before libsndfile gives a vaguer error for them."""
    if not path.is_file():
        raise AudioDecodeError(
            path,
            MISSING_FILE,
            f"Audio file not found: {path}. Check the path in the metadata CSV "
            "(relative paths are resolved against the CSV's folder or the audio root).",
        )
    if path.stat().st_size == 0:
        raise _empty(path)


def _empty(name: str | os.PathLike) -> AudioDecodeError:
    return AudioDecodeError(
        name, EMPTY_FILE, f"Audio file is empty (0 bytes): {name}. Re-export or re-download it, or drop the row."
    )


def _undecodable(name: str | os.PathLike, error: Exception) -> AudioDecodeError:
    return AudioDecodeError(
        name,
        UNDECODABLE_FILE,
        f"Cannot decode audio file {name} ({error}). Convert it to 16 kHz mono WAV or "
        "FLAC, e.g. `ffmpeg -i in.ext -ac 1 -ar 16000 out.wav`, or drop the row.",
    )


def _no_samples(name: str | os.PathLike) -> AudioDecodeError:
    return AudioDecodeError(
        name, EMPTY_FILE, f"Audio file has no samples: {name}. Re-export or re-download it, or drop the row."
    )


def _open(source: AudioSource, name: str | None) -> tuple[str | io.BytesIO, str]:
    """What soundfile reads (a path or a byte stream) and the name errors show; checks existence first."""
    if isinstance(source, bytes):
        label = name or "<audio bytes>"
        if not source:
            raise _empty(label)
        return io.BytesIO(source), label
    path = Path(source)
    _check_exists(path)
    return str(path), name or str(path)


def audio_info(source: AudioSource, name: str | None = None) -> AudioInfo:
    """Duration, sample rate and channels from the header only: cheap enough to screen every file."""
    handle, label = _open(source, name)
    try:
        info = sf.info(handle)
    except (sf.SoundFileError, RuntimeError) as error:
        raise _undecodable(label, error) from error
    if info.frames <= 0 or info.samplerate <= 0:
        raise _no_samples(label)
    return AudioInfo(
        duration=info.frames / info.samplerate,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
    )


def decode_audio(source: AudioSource, target_sr: int = 16000, name: str | None = None) -> DecodedAudio:
    """Decode a path or file bytes to mono float32 in [-1, 1] at ``target_sr``.

    Channels are averaged (a stereo recording of one speaker loses nothing that matters for ASR) and
    the rate is converted with soxr "HQ", which is fast and transparent for speech.
    Raises:
        AudioDecodeError: missing, empty or undecodable source (``.reason`` says which).
    """
    handle, label = _open(source, name)
    try:
        data, sample_rate = sf.read(handle, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as error:
        raise _undecodable(label, error) from error
    if data.shape[0] == 0:
        raise _no_samples(label)
    if not np.isfinite(data).all():
        raise _undecodable(label, ValueError("NaN or infinite samples"))
    clipped_share = float(np.count_nonzero((np.abs(data) >= FULL_SCALE).any(axis=1))) / data.shape[0]
    audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sample_rate != target_sr:
        audio = soxr.resample(audio, sample_rate, target_sr, quality="HQ")
    # Float files may exceed full scale and resampling can overshoot slightly; callers rely on [-1, 1].
    audio = np.clip(audio, -1.0, 1.0)
    return DecodedAudio(
        wave=np.ascontiguousarray(audio, dtype=np.float32),
        duration=data.shape[0] / sample_rate,
        clipped_share=clipped_share,
    )


def load_audio(path: str | os.PathLike, target_sr: int = 16000) -> tuple[np.ndarray, float]:
    """Decode ``path`` to mono float32 in [-1, 1] at ``target_sr``; also return its original duration (s)."""
    decoded = decode_audio(path, target_sr)
    return decoded.wave, decoded.duration


def encode_wave(wave: np.ndarray, sample_rate: int) -> bytes:
    """WAV bytes of a float32 waveform, lossless (32-bit float samples): a stored ``datasets.Audio`` value."""
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(wave, dtype=np.float32), sample_rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def audio_array(value: Any) -> np.ndarray:
    """The float32 samples of a stored ``audio`` value: a ``datasets.Audio`` cell (``{"bytes", "path"}``, as
    prepared now), a decoded one (``{"array", ...}``) or a list of samples (versions prepared before)."""
    if isinstance(value, dict):
        if value.get("array") is not None:
            return np.asarray(value["array"], dtype=np.float32)
        return sf.read(io.BytesIO(value["bytes"]), dtype="float32")[0]
    return np.asarray(value, dtype=np.float32)


def rms_dbfs(wave: np.ndarray) -> float:
    """Loudness of a waveform in dB relative to full scale (-inf for digital silence)."""
    power = float(np.mean(np.square(wave, dtype=np.float64)))
    return 10 * np.log10(power) if power > 0 else -np.inf


def featurize_batch(waveforms: Sequence[Any], feature_extractor: AI2TextFeatureExtractor) -> list[np.ndarray]:
    """Unpadded (frames, n_mels) float32 log-mels of 16 kHz waveforms (arrays, or stored ``audio`` values).

    The one place waveforms become model inputs: preparation stores its output, and an on-the-fly
    collator (``prepare --on-the-fly`` keeps an ``audio`` column) or a streamed dataset calls it per batch,
    after any waveform augmentation, so features never differ between the modes. One extractor call per
    waveform: a batched call pads all to the longest and is slower on CPU (bench_features measures both).
    """
    rate = feature_extractor.sampling_rate
    computed = (feature_extractor(audio_array(w), sampling_rate=rate, padding=False) for w in waveforms)
    # The model's main input: our log-mels, a wav2vec2 extractor's input_values, w2v-BERT's filterbank frames.
    return [features[feature_extractor.model_input_names[0]][0] for features in computed]


def with_features(dataset: Any, feature_extractor: AI2TextFeatureExtractor) -> Any:
    """A prepared split whose rows carry numpy ``input_features``: as stored, or computed from the ``audio``
    column (``prepare --on-the-fly``) when rows are read, by :func:`featurize_batch` as training does."""
    if "input_features" in dataset.column_names:
        return dataset.with_format("numpy", columns=["input_features"], output_all_columns=True)

    def featurize(rows: dict) -> dict:
        if "audio" in rows:  # absent when another single column is read (dataset["text"])
            rows["input_features"] = featurize_batch(rows.pop("audio"), feature_extractor)
        return rows

    return dataset.with_transform(featurize)
