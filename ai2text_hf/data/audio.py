"""Audio decoding for data preparation and inference: any file soundfile reads → 16 kHz mono float32.

We decode ourselves instead of using ``datasets.Audio``: in datasets 5 that feature decodes through
torchcodec and the FFmpeg shared libraries, a heavy dependency we do not need for WAV/FLAC/OGG/MP3,
which libsndfile (≥ 1.1 reads MP3) handles directly and, for WAV/FLAC, faster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

#: Stable reason codes, shared with the preparation report.
MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
UNDECODABLE_FILE = "undecodable_file"


class AudioDecodeError(Exception):
    """An audio file that cannot be used; ``reason`` is a stable code for reports, the message says the fix."""

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


def _check_exists(path: Path) -> None:
    """Catch the two cheapest failures before libsndfile gives a vaguer error for them."""
    if not path.is_file():
        raise AudioDecodeError(
            path, MISSING_FILE, f"Audio file not found: {path}. Check the path in the metadata CSV "
            "(relative paths are resolved against the CSV's folder or --audio-root)."
        )
    if path.stat().st_size == 0:
        raise AudioDecodeError(
            path, EMPTY_FILE, f"Audio file is empty (0 bytes): {path}. Re-export or re-download it, or drop the row."
        )


def _undecodable(path: Path, error: Exception) -> AudioDecodeError:
    return AudioDecodeError(
        path, UNDECODABLE_FILE, f"Cannot decode audio file {path} ({error}). Convert it to 16 kHz mono WAV or "
        "FLAC, e.g. `ffmpeg -i in.ext -ac 1 -ar 16000 out.wav`, or drop the row."
    )


def _no_samples(path: Path) -> AudioDecodeError:
    return AudioDecodeError(
        path, EMPTY_FILE, f"Audio file has no samples: {path}. Re-export or re-download it, or drop the row."
    )


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Duration, sample rate and channels from the header only: cheap enough to screen every file."""
    path = Path(path)
    _check_exists(path)
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as error:
        raise _undecodable(path, error) from error
    if info.frames <= 0 or info.samplerate <= 0:
        raise _no_samples(path)
    return AudioInfo(
        duration=info.frames / info.samplerate,
        sample_rate=int(info.samplerate),
        channels=int(info.channels),
        frames=int(info.frames),
    )


def load_audio(path: str | os.PathLike, target_sr: int = 16000) -> tuple[np.ndarray, float]:
    """Decode ``path`` to mono float32 in [-1, 1] at ``target_sr``; also return its original duration (s).

    Channels are averaged (a stereo recording of one speaker loses nothing that matters for ASR) and
    the rate is converted with soxr "HQ", which is fast and transparent for speech.
    Raises:
        AudioDecodeError: missing, empty or undecodable file (``.reason`` says which).
    """
    path = Path(path)
    _check_exists(path)
    try:
        data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as error:
        raise _undecodable(path, error) from error
    if data.shape[0] == 0:
        raise _no_samples(path)
    if not np.isfinite(data).all():
        raise _undecodable(path, ValueError("NaN or infinite samples"))
    duration = data.shape[0] / sample_rate
    audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if sample_rate != target_sr:
        audio = soxr.resample(audio, sample_rate, target_sr, quality="HQ")
    # Float files may exceed full scale and resampling can overshoot slightly; callers rely on [-1, 1].
    audio = np.clip(audio, -1.0, 1.0)
    return np.ascontiguousarray(audio, dtype=np.float32), duration
