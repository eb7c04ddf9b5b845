"""Data preparation: audio decoding and the CSV → prepared DatasetDict stage.

Only the light, always-needed entry points are re-exported; synthesis, collation and sampling are imported
from their own modules so importing the package stays cheap.
"""

from .audio import AudioDecodeError, load_audio
from .prepare import load_prepared, prepare_dataset, read_manifest

__all__ = ["AudioDecodeError", "load_audio", "load_prepared", "prepare_dataset", "read_manifest"]
