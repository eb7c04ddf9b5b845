"""ai2text-hf: Vietnamese CTC speech recognition on the Hugging Face stack.

Importing the package is cheap: the model classes load on first use (``from ai2text_hf import AI2TextForCTC``),
and their registration with the transformers Auto classes (also marked for ``register_for_auto_class``, so a
saved folder loads with ``trust_remote_code=True`` where this package is not installed) runs as soon as
transformers' Auto classes are loaded: ``import ai2text_hf`` then ``pipeline(...)`` finds the model.
"""

import importlib

from .auto_registration import register_auto_classes, register_when_needed

__version__ = "0.1.0"

_CLASSES = {
    "AI2TextConfig": "configuration_ai2text",
    "AI2TextFeatureExtractor": "feature_extraction_ai2text",
    "AI2TextForCTC": "modeling_ai2text",
    "AI2TextProcessor": "processing_ai2text",
    "AI2TextTokenizer": "tokenization_ai2text",
}

__all__ = [*_CLASSES, "__version__", "register_auto_classes"]


def __getattr__(name: str):
    if name in _CLASSES:
        return getattr(importlib.import_module(f".{_CLASSES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_when_needed()
