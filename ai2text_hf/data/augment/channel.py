"""Channels and codecs, each a round trip in this process: telephone band, μ-law, GSM, MP3, Opus.

Libraries: scipy and soxr for the telephone band, libsndfile (soundfile) for G.711 μ-law, pedalboard (LAME,
libgsm) for MP3 and GSM, PyAV (FFmpeg's libopus) for Opus. PyAV is imported on first use, so a machine without
it fails only when a recipe draws Opus; :func:`probe_codec` (the training preflight) runs every codec the
recipe lists before the first step and says which one this machine lacks.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
import pedalboard
import soundfile as sf
import soxr
from scipy.signal import butter, sosfilt

from .options import Augmentation
from .waveform import fit_length

#: The narrowband telephone channel: 8 kHz sampling, 300-3400 Hz pass band (ITU-T G.712).
TELEPHONE_RATE = 8000
TELEPHONE_BAND = (300.0, 3400.0)
#: Rates libopus encodes natively; anything else goes through 48 kHz.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
# libopus's cheapest search (complexity 0: 3x faster than the default 10 here); the bitrate drawn from
# opus_kbps decides what the channel loses.
_OPUS_COMPLEXITY = "0"
# What to install when a codec fails the preflight for want of its (lazily imported) library.
INSTALL_HINT = {"opus": "pip install av"}


@lru_cache(maxsize=1)
def _telephone_filter() -> np.ndarray:
    return butter(4, TELEPHONE_BAND, btype="bandpass", fs=TELEPHONE_RATE, output="sos")


def _narrowband(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """The telephone channel's 8 kHz signal: resampled, then band-passed to 300-3400 Hz."""
    return sosfilt(_telephone_filter(), soxr.resample(wave, sample_rate, TELEPHONE_RATE)).astype(np.float32)


def _wideband(narrow: np.ndarray, sample_rate: int, length: int) -> np.ndarray:
    return fit_length(soxr.resample(narrow, TELEPHONE_RATE, sample_rate).astype(np.float32), length)


def telephone(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """A narrowband phone line: nothing above 3.4 kHz (or below 300 Hz) survives."""
    return _wideband(_narrowband(wave, sample_rate), sample_rate, len(wave))


def mulaw(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """G.711 μ-law, 8 bits at 8 kHz, on a phone line (libsndfile's encoder)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(_narrowband(wave, sample_rate), -1, 1), TELEPHONE_RATE, format="WAV", subtype="ULAW")
    buffer.seek(0)
    return _wideband(sf.read(buffer, dtype="float32")[0], sample_rate, len(wave))


def gsm(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """GSM 06.10 full rate (13 kb/s) on a phone line."""
    narrow = _narrowband(wave, sample_rate)
    coded = pedalboard.GSMFullRateCompressor()(narrow[None, :], TELEPHONE_RATE)[0]
    return _wideband(coded, sample_rate, len(wave))


def mp3(wave: np.ndarray, sample_rate: int, quality: float) -> np.ndarray:
    """MP3 (LAME, through pedalboard) at VBR ``quality``: 0 best, 10 worst."""
    return fit_length(pedalboard.MP3Compressor(vbr_quality=quality)(wave[None, :], sample_rate)[0], len(wave))


def opus(wave: np.ndarray, sample_rate: int, kbps: float) -> np.ndarray:
    """Opus at ``kbps`` (an Ogg stream encoded and decoded in memory by FFmpeg's libopus, through PyAV)."""
    import av

    rate = sample_rate if sample_rate in _OPUS_RATES else 48000
    source = wave if rate == sample_rate else soxr.resample(wave, sample_rate, rate).astype(np.float32)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate, layout="mono")
        stream.bit_rate = int(kbps * 1000)
        stream.options = {"compression_level": _OPUS_COMPLEXITY}
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(source[None, :]), format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    buffer.seek(0)
    with av.open(buffer) as container:
        decoded_rate = container.streams.audio[0].rate
        chunks = [frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)]
    decoded = np.concatenate(chunks).astype(np.float32)
    return fit_length(soxr.resample(decoded, decoded_rate, sample_rate).astype(np.float32), len(wave))


def apply_codec(
    name: str, wave: np.ndarray, sample_rate: int, rng: np.random.Generator, options: Augmentation
) -> np.ndarray:
    """Run ``wave`` through codec ``name``, its setting drawn from ``options`` (the augmentation section)."""
    if name == "telephone":
        return telephone(wave, sample_rate)
    if name == "mulaw":
        return mulaw(wave, sample_rate)
    if name == "gsm":
        return gsm(wave, sample_rate)
    if name == "mp3":
        return mp3(wave, sample_rate, float(rng.uniform(*options.mp3_quality)))
    if name == "opus":
        return opus(wave, sample_rate, float(rng.uniform(*options.opus_kbps)))
    raise ValueError(f"unknown codec {name!r}")


def probe_codec(name: str, options: Augmentation, sample_rate: int = 16000) -> str | None:
    """Why codec ``name`` cannot run on this machine (a round trip of 0.1 s of tone), or None when it can."""
    tone = (0.1 * np.sin(2 * np.pi * 440 * np.arange(sample_rate // 10) / sample_rate)).astype(np.float32)
    try:
        apply_codec(name, tone, sample_rate, np.random.default_rng(0), options)
    except Exception as error:  # whatever a missing library or an encoder built without the codec raises
        return f"{type(error).__name__}: {error}"
    return None
