"""What one uploaded recording and one live stream may be: ``ai2text serve``'s limits, defined once for the server
and the command line (which builds its arguments from these dataclasses, so it imports no web framework)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_GROUP = "upload limits (checked from the file's header before decoding)"
_STREAM_GROUP = "live streams (WebSocket /stream)"
#: Bytes per millisecond of a stream's audio: 16-bit samples at 16 kHz.
STREAM_BYTES_PER_MS = 32


def _limit(default: float, help_text: str, flag: str | None = None, group: str = _GROUP) -> Any:
    metadata = {"help": help_text, "group": group}
    if flag:
        metadata["flags"] = (flag,)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class AudioLimits:
    """What one uploaded recording may be; all but the file size are read from its header before decoding."""

    max_upload_mb: float = _limit(20.0, "Largest audio file, MiB.")
    max_seconds: float = _limit(120.0, "Longest recording, seconds.", "--max-audio-seconds")
    max_channels: int = _limit(8, "Most channels in a file (they are averaged to mono).")
    max_sample_rate: int = _limit(
        96_000, "Highest sample rate, Hz (the model hears 16 kHz; higher rates only cost memory)."
    )
    max_decoded_mb: float = _limit(
        64.0,
        "Largest decoded size, MiB: frames x channels x 4 bytes (e.g. 120 s of 48 kHz stereo is 44). It bounds the "
        "memory of a decode (about three times this at its peak), whatever the compression.",
    )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def describe(self) -> str:
        """The limits in one sentence, for the page and the docs."""
        return (
            f"files up to {self.max_upload_mb:g} MiB and {self.max_seconds:g} s, with at most "
            f"{self.max_channels} channels, {self.max_sample_rate} Hz and {self.max_decoded_mb:g} MiB once decoded "
            f"(frames x channels x 4 bytes)"
        )


def _stream_limit(default: float, help_text: str) -> Any:
    return _limit(default, help_text, group=_STREAM_GROUP)


@dataclass(frozen=True)
class StreamLimits:
    """What live streams may cost: how many at once, how long, how fast, and the threads that recognise them."""

    max_streams: int = _stream_limit(32, "Live streams served at once; more are refused (close code 1013).")
    stream_idle_seconds: float = _stream_limit(
        10.0, "A stream that sends nothing for this long gets its last final and is closed (1008)."
    )
    max_stream_seconds: float = _stream_limit(
        3600.0, "Longest stream, seconds of audio; it then gets its last final and is closed (1008)."
    )
    max_frame_ms: float = _stream_limit(
        1000.0, "Largest binary frame, milliseconds of 16 kHz 16-bit audio (32 bytes a millisecond); larger: 1009."
    )
    stream_buffer_seconds: float = _stream_limit(
        5.0,
        "Audio a stream may have sent but not yet had recognised; past it the server stops reading that stream, so "
        "TCP slows a client that sends faster than the server recognises (no stream can fill the memory).",
    )
    stream_workers: int = _stream_limit(2, "Threads running the recognition of all streams.")

    def __post_init__(self) -> None:
        if self.stream_buffer_seconds * 1000 < self.max_frame_ms:
            raise ValueError(
                f"stream_buffer_seconds ({self.stream_buffer_seconds:g} s) must hold the largest frame "
                f"(max_frame_ms {self.max_frame_ms:g})."
            )

    @property
    def max_frame_bytes(self) -> int:
        return int(self.max_frame_ms * STREAM_BYTES_PER_MS)

    @property
    def max_message_bytes(self) -> int:
        """Largest WebSocket message uvicorn reads: frames up to this size get the server's JSON refusal, larger
        ones are cut off by uvicorn itself (close 1009, no message)."""
        return 4 * self.max_frame_bytes
