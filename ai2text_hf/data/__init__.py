"""Data preparation: audio decoding, the CSV → prepared DatasetDict stage and its statistics.

Only the entry points every stage needs are re-exported; synthesis, importers, collation, sampling and
streaming live in their own modules (``ai2text_hf.data.synth``, ``.importers``, ``.collator``,
``.sampler``, ``.streaming``) and are imported from there.
"""

from .audio import AudioDecodeError, featurize_batch, load_audio
from .prepare import PrepareResult, ValidationFailed, load_prepared, prepare_dataset, read_manifest
from .stats import dataset_statistics

__all__ = [
    "AudioDecodeError",
    "PrepareResult",
    "ValidationFailed",
    "dataset_statistics",
    "featurize_batch",
    "load_audio",
    "load_prepared",
    "prepare_dataset",
    "read_manifest",
]
