"""Streaming recognition: text while people are still speaking (docs/streaming.md).

A :class:`StreamingRecognizer` holds one model trained for streaming (``recipes/streaming-cpu.yaml``); each
:class:`StreamingSession` is one audio stream fed in blocks of any size, giving partial and final
:class:`StreamEvent` s. Names load on first use, so the command line reads :class:`StreamingOptions` without torch.
"""

from ..lazy_exports import lazy_exports

_EXPORTS = {
    "StreamingOptions": "options",
    "StreamingRecognizer": "session",
    "StreamingSession": "session",
    "StreamEvent": "session",
    "StreamingNotSupportedError": "session",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
