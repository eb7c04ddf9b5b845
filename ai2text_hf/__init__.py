"""ai2text-hf: Vietnamese CTC speech recognition on the Hugging Face stack.

Importing the package registers the model, its configuration, feature extractor, tokenizer and
processor with the transformers Auto classes, and marks them for ``register_for_auto_class`` so a
saved folder also loads with ``trust_remote_code=True`` where this package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForCTC,
    AutoProcessor,
    AutoTokenizer,
)

from .configuration_ai2text import AI2TextConfig
from .feature_extraction_ai2text import AI2TextFeatureExtractor
from .modeling_ai2text import AI2TextForCTC
from .processing_ai2text import AI2TextProcessor
from .tokenization_ai2text import AI2TextTokenizer

__version__ = "0.1.0"

__all__ = [
    "AI2TextConfig",
    "AI2TextFeatureExtractor",
    "AI2TextForCTC",
    "AI2TextProcessor",
    "AI2TextTokenizer",
    "__version__",
]

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
