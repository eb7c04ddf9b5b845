"""ai2text-hf: Vietnamese CTC speech recognition on the Hugging Face stack.

The front door for Python users, each name loaded on first use so that ``import ai2text_hf`` stays cheap (no
torch; the ``ai2text`` command starts with it)::

    from ai2text_hf import Transcriber, DecodingOptions, asr_pipeline              # use a model
    from ai2text_hf import PrepareOptions, prepare_dataset                         # CSV -> dataset version
    from ai2text_hf import load_recipe, train, evaluate_split                      # train and score

The model classes (``AI2TextForCTC`` and its config, feature extractor, tokenizer, processor) load the same way;
their registration with the transformers Auto classes (also marked for ``register_for_auto_class``, so a saved
folder loads with ``trust_remote_code=True`` where this package is not installed) runs as soon as transformers'
Auto classes are loaded: ``import ai2text_hf`` then ``pipeline(...)`` finds the model.
"""

from .auto_registration import register_auto_classes, register_when_needed
from .lazy_exports import lazy_exports

__version__ = "0.1.0"

# Public name -> the module that defines it (relative to this package), imported on first access.
_EXPORTS = {
    "AI2TextConfig": "configuration_ai2text",
    "AI2TextFeatureExtractor": "feature_extraction_ai2text",
    "AI2TextForCTC": "modeling_ai2text",
    "AI2TextProcessor": "processing_ai2text",
    "AI2TextTokenizer": "tokenization_ai2text",
    "Transcriber": "inference",
    "DecodingOptions": "decoding",
    "asr_pipeline": "decoding.pipeline",
    "PrepareOptions": "data.options",
    "prepare_dataset": "data.prepare",
    "load_recipe": "training.recipe",
    "train": "training.trainer",
    "evaluate_split": "evaluation.evaluate",
}

__all__ = [*_EXPORTS, "__version__", "register_auto_classes"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


register_when_needed()
