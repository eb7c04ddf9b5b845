"""Waveform augmentation for the on-the-fly data path (train split only), configured by the recipe's
``augmentation`` section (:class:`Augmentation`).

Modules, imported one way (``options`` ← ``waveform`` ← ``noise``/``room``/``channel`` ← ``chain``):
``options`` (the keys and their checks), ``waveform`` (tempo, trim, pad, gain, floor, mixing), ``noise``
(coloured, babble, noise folder), ``room`` (simulated reverberation), ``channel`` (telephone band and
codecs), ``chain`` (:class:`~.chain.WaveformAugmenter`, the signal chain) and ``vtlp`` (feature-side
warping, used by the collator). Only the options are imported here: a recipe is read without loading the
signal-processing libraries.
"""

from .options import CODECS, FAMILIES, NOISE_SOURCES, Augmentation, noise_files

__all__ = ["CODECS", "FAMILIES", "NOISE_SOURCES", "Augmentation", "noise_files"]
