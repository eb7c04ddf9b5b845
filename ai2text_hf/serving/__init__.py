"""Serving models over HTTP: ``ai2text serve`` (needs the ``serve`` extra: fastapi, uvicorn, python-multipart)."""

from .app import ServeSettings, create_app
from .batching import BatchSettings
from .registry import ModelRegistry
from .server import BackgroundServer

__all__ = ["BackgroundServer", "BatchSettings", "ModelRegistry", "ServeSettings", "create_app"]
