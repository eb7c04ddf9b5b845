"""Serving models over HTTP: ``ai2text serve`` (needs the ``serve`` extra: fastapi, uvicorn, python-multipart)."""

from .app import ServeSettings, create_app
from .batching import BatchSettings
from .guards import AccessSettings
from .registry import ModelRegistry
from .server import BackgroundServer
from .uploads import AudioLimits

__all__ = [
    "AccessSettings",
    "AudioLimits",
    "BackgroundServer",
    "BatchSettings",
    "ModelRegistry",
    "ServeSettings",
    "create_app",
]
