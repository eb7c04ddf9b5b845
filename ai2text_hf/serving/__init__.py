"""Serving models over HTTP and WebSocket: ``ai2text serve`` (needs the ``serve`` extra: fastapi, uvicorn,
python-multipart, websockets).

Names load on first use, so the command line reads :class:`AudioLimits` without importing the web framework.
"""

from ..lazy_exports import lazy_exports

_EXPORTS = {
    "AccessSettings": "guards",
    "AudioLimits": "limits",
    "BackgroundServer": "server",
    "BatchSettings": "batching",
    "ModelRegistry": "registry",
    "ServeSettings": "app",
    "StreamLimits": "limits",
    "create_app": "app",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
