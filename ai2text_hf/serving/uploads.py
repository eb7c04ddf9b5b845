"""Checking an uploaded audio file before it reaches a model: size, content type, header, decodability.

Every problem is a 4xx answer whose message names the file and the fix; bad input never reaches the
model, so it can never cause a 500. Channels, sample rate and length are read from the file's header and
checked against :class:`AudioLimits` *before* any sample is decoded: a few hundred kilobytes of FLAC can
declare gigabytes of samples (8 channels at 384 kHz), and the decoder allocates what the header declares.
Decoding is the package's own (soundfile + soxr, from bytes).
"""

from __future__ import annotations

import numpy as np
from fastapi import HTTPException, UploadFile

from ..data.audio import AudioDecodeError, audio_info, decode_audio
from .limits import AudioLimits

#: Content types a browser, curl or an HTTP library send for audio files (curl and many libraries
#: fall back to application/octet-stream; the decoder decides then).
GENERIC_TYPES = {"application/octet-stream", "application/ogg"}
FORMATS_HINT = "Send WAV, FLAC, OGG or MP3, e.g. `ffmpeg -i in.ext -ac 1 -ar 16000 out.wav`."
#: Bytes per decoded sample: soundfile decodes to float32.
DECODED_SAMPLE_BYTES = 4
#: The frame count libsndfile reports for a stream that does not state its length (SF_COUNT_MAX).
UNKNOWN_LENGTH = 2**63 - 1


def too_large(what: str, max_bytes: int) -> str:
    return (
        f"{what} is larger than the server's limit of {max_bytes / 2**20:.1f} MiB per audio file. "
        "Send a shorter recording or a compressed format (FLAC, OGG, MP3)."
    )


def check_content_type(filename: str, content_type: str | None) -> None:
    """Refuse (415) parts whose declared type is clearly not audio; undeclared types go to the decoder."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type and not media_type.startswith("audio/") and media_type not in GENERIC_TYPES:
        raise HTTPException(
            415,
            f"{filename!r} was sent as {media_type!r}, which is not audio. {FORMATS_HINT}",
        )


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """The upload's bytes, refused (413) beyond ``max_bytes`` without reading further."""
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(413, too_large(repr(upload.filename), max_bytes))
    return data


def _undecodable(filename: str, error: AudioDecodeError) -> HTTPException:
    # libsndfile's own words, without the message's "<_io.BytesIO object at 0x...>"
    cause = getattr(error.__cause__, "error_string", None) or error.__cause__ or error.reason.replace("_", " ")
    return HTTPException(422, f"Cannot decode {filename!r} as audio ({cause}) {FORMATS_HINT}")


def check_header(data: bytes, filename: str, limits: AudioLimits) -> None:
    """Refuse a file whose header declares more than ``limits`` allow: 422 for channels, rate or an unstated
    length, 413 for duration or decoded size. Nothing is decoded here."""
    try:
        info = audio_info(data, filename)
    except AudioDecodeError as error:
        raise _undecodable(filename, error) from error
    fix = "Convert it, e.g. `ffmpeg -i in.ext -ac 1 -ar 16000 out.wav`."
    if info.frames == UNKNOWN_LENGTH:  # e.g. a FLAC written to a pipe; decoding it would allocate that many frames
        raise HTTPException(422, f"{filename!r} does not state its length in its header. {fix}")
    if info.channels > limits.max_channels:
        raise HTTPException(
            422, f"{filename!r} has {info.channels} channels; this server takes at most {limits.max_channels}. {fix}"
        )
    if info.sample_rate > limits.max_sample_rate:
        raise HTTPException(
            422,
            f"{filename!r} is sampled at {info.sample_rate} Hz; this server takes at most {limits.max_sample_rate} Hz "
            f"(the model hears 16 kHz). {fix}",
        )
    if info.duration > limits.max_seconds:
        raise HTTPException(
            413,
            f"{filename!r} is {info.duration:.1f} s long; this server transcribes at most {limits.max_seconds:g} s "
            "per request. Split the recording into shorter parts.",
        )
    decoded_mb = info.frames * info.channels * DECODED_SAMPLE_BYTES / 2**20
    if decoded_mb > limits.max_decoded_mb:
        raise HTTPException(
            413,
            f"{filename!r} decodes to {decoded_mb:.1f} MiB ({info.channels} channels x {info.frames} frames); this "
            f"server decodes at most {limits.max_decoded_mb:g} MiB per request. {fix}",
        )


def decode_upload(data: bytes, filename: str, sampling_rate: int, limits: AudioLimits) -> np.ndarray:
    """Mono float32 at ``sampling_rate``, decoded only once :func:`check_header` passed.

    The decoder allocates frames x channels as the header declares (never more), so the header check
    bounds the memory of the decode.
    """
    check_header(data, filename, limits)
    try:
        return decode_audio(data, sampling_rate, filename).wave
    except AudioDecodeError as error:
        raise _undecodable(filename, error) from error
