"""Registration with the transformers Auto classes, run when they are first needed rather than on import.

``import ai2text_hf`` must stay cheap (the ``ai2text`` command starts with it, and ``ai2text prepare`` answers
"up to date" without loading torch), yet ``import ai2text_hf`` followed by ``pipeline(...)`` or
``AutoModelForCTC.from_pretrained(...)`` must find our model. Every Auto lookup goes through
``transformers.models.auto.configuration_auto``, which imports torch anyway: so registration runs as soon as
that module is loaded (or at once, when it already is). It waits for the outermost import of a transformers or
ai2text_hf module to finish, so no module it imports is still half-initialised.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Callable

_TRIGGER = "transformers.models.auto.configuration_auto"
_WATCHED = ("transformers.", "ai2text_hf.")


def register_auto_classes() -> None:
    """Register config, model, feature extractor, tokenizer and processor (idempotent), and mark them for
    ``register_for_auto_class`` so a saved folder also loads with ``trust_remote_code=True`` without this package."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForCTC, AutoProcessor, AutoTokenizer

    from .configuration_ai2text import AI2TextConfig
    from .feature_extraction_ai2text import AI2TextFeatureExtractor
    from .modeling_ai2text import AI2TextForCTC
    from .processing_ai2text import AI2TextProcessor
    from .tokenization_ai2text import AI2TextTokenizer

    AutoConfig.register(AI2TextConfig.model_type, AI2TextConfig, exist_ok=True)
    AutoModelForCTC.register(AI2TextConfig, AI2TextForCTC, exist_ok=True)
    AutoFeatureExtractor.register(AI2TextConfig, AI2TextFeatureExtractor, exist_ok=True)
    AutoTokenizer.register(AI2TextConfig, tokenizer_class=AI2TextTokenizer, exist_ok=True)
    AutoProcessor.register(AI2TextConfig, AI2TextProcessor, exist_ok=True)

    AI2TextConfig.register_for_auto_class()
    AI2TextForCTC.register_for_auto_class("AutoModelForCTC")
    AI2TextFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
    AI2TextTokenizer.register_for_auto_class("AutoTokenizer")
    AI2TextProcessor.register_for_auto_class("AutoProcessor")


class _AfterImports(importlib.abc.MetaPathFinder):
    """Counts nested imports of watched modules; when the outermost one ends and ``_TRIGGER`` is loaded, runs
    ``callback`` once (after removing itself, so the callback's own imports are not watched)."""

    def __init__(self, callback: Callable[[], None]):
        self.callback = callback
        self.depth = 0

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith(_WATCHED) and fullname != "transformers":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader.exec_module = self._counted(spec.loader.exec_module)
        return spec

    def _counted(self, exec_module: Callable) -> Callable:
        def counted(module) -> None:
            self.depth += 1
            try:
                exec_module(module)
            finally:
                self.depth -= 1
            if self.depth == 0 and _TRIGGER in sys.modules and self in sys.meta_path:
                sys.meta_path.remove(self)
                self.callback()

        return counted


def register_when_needed() -> None:
    """Register now if transformers' Auto classes are loaded, else as soon as they are."""
    if _TRIGGER in sys.modules:
        register_auto_classes()
    else:
        sys.meta_path.insert(0, _AfterImports(register_auto_classes))
