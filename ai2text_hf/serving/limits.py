"""What one uploaded recording may be: ``ai2text serve``'s upload limits, defined once for the server and the
command line (which builds its arguments from this dataclass, so it imports no web framework)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_GROUP = "upload limits (checked from the file's header before decoding)"


def _limit(default: float, help_text: str, flag: str | None = None) -> Any:
    metadata = {"help": help_text, "group": _GROUP}
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
