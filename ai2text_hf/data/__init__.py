"""Data preparation: audio decoding, the CSV → prepared DatasetDict stage and its statistics.

Only the entry points every stage needs are re-exported, each loaded on first use so that the light modules
(``ai2text_hf.data.options``: the preparation options the command line is built from) import without
``datasets``. Synthesis, importers, collation, sampling and streaming live in their own modules
(``ai2text_hf.data.synth``, ``.importers``, ``.collator``, ``.sampler``, ``.streaming``).
"""

from ..lazy_exports import lazy_exports

# Public name -> the module that defines it (relative to this package), imported on first access.
_EXPORTS = {
    "AudioDecodeError": "audio",
    "featurize_batch": "audio",
    "load_audio": "audio",
    "PrepareOptions": "options",
    "PrepareResult": "prepare",
    "ValidationFailed": "prepare",
    "load_prepared": "versions",
    "prepare_dataset": "prepare",
    "read_manifest": "versions",
    "resolve_split": "versions",
    "dataset_statistics": "stats",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
