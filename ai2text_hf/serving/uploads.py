"""Checking an uploaded audio file before it reaches a model: size, content type, decodability, duration.

Every problem is a 4xx answer whose message names the file and the fix; bad input never reaches the
model, so it can never cause a 500. Decoding is the package's own (soundfile + soxr, from bytes).
"""

from __future__ import annotations

import json

import numpy as np
from fastapi import HTTPException, UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..data.audio import AudioDecodeError, audio_info, decode_audio

#: Content types a browser, curl or an HTTP library send for audio files (curl and many libraries
#: fall back to application/octet-stream; the decoder decides then).
GENERIC_TYPES = {"application/octet-stream", "application/ogg"}
FORMATS_HINT = "Send WAV, FLAC, OGG or MP3, e.g. `ffmpeg -i in.ext -ac 1 -ar 16000 out.wav`."


#: Room for the multipart framing and the text fields on top of the audio in a request body.
FORM_OVERHEAD_BYTES = 256 * 1024


def _too_large(what: str, max_bytes: int) -> str:
    return (
        f"{what} is larger than the server's limit of {max_bytes / 2**20:.1f} MiB per audio file. "
        "Send a shorter recording or a compressed format (FLAC, OGG, MP3)."
    )


class UploadSizeLimit:
    """ASGI middleware bounding request bodies on ``path`` before the multipart parser spools them to disk.

    A declared Content-Length over the limit is refused at once; a body without one (chunked) is counted
    as it arrives and refused when it passes the limit.
    """

    def __init__(self, app: ASGIApp, path: str, max_bytes: int):
        self.app = app
        self.path = path
        self.max_bytes = max_bytes
        self.limit = max_bytes + FORM_OVERHEAD_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            detail = _too_large(f"The request ({int(declared) / 2**20:.1f} MiB)", self.max_bytes)
            body = json.dumps({"detail": detail}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            return await send({"type": "http.response.body", "body": body})
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # FastAPI's form parsing passes an HTTPException on as the answer
                raise HTTPException(413, _too_large("The request", self.max_bytes))
            return message

        await self.app(scope, counted, send)


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
        raise HTTPException(413, _too_large(repr(upload.filename), max_bytes))
    return data


def decode_upload(data: bytes, filename: str, sampling_rate: int, max_seconds: float) -> np.ndarray:
    """Mono float32 at ``sampling_rate``; 422 when undecodable, 413 when longer than ``max_seconds``.

    The duration comes from the header first, so an overlong file is refused before it is decoded.
    """
    try:
        duration = audio_info(data, filename).duration
        if duration <= max_seconds:
            decoded = decode_audio(data, sampling_rate, filename)
            duration = decoded.duration
    except AudioDecodeError as error:
        # libsndfile's own words, without the message's "<_io.BytesIO object at 0x...>"
        cause = getattr(error.__cause__, "error_string", None) or error.__cause__ or error.reason.replace("_", " ")
        raise HTTPException(422, f"Cannot decode {filename!r} as audio ({cause}) {FORMATS_HINT}") from error
    if duration > max_seconds:
        raise HTTPException(
            413,
            f"{filename!r} is {duration:.1f} s long; this server transcribes at most {max_seconds:g} s per request. "
            "Split the recording into shorter parts.",
        )
    return decoded.wave
