"""Checks that a prepared dataset's features are the ones a model expects."""

from __future__ import annotations

from typing import Any

# Settings that change the features' meaning; anything else (e.g. processor_class) may differ.
FEATURE_KEYS = (
    "feature_size",
    "sampling_rate",
    "n_fft",
    "win_length",
    "hop_length",
    "f_min",
    "f_max",
    "normalize",
    "pitch",
    "pitch_norm_window",
    "causal_norm_window",
)
# Keys that settings saved before they existed lack, with the value those settings meant.
_ADDED_KEYS = {"pitch": False, "pitch_norm_window": None, "causal_norm_window": None}
# Keys that only shape the pitch columns: they cannot disagree when neither side has pitch.
_PITCH_KEYS = ("pitch_norm_window",)
# Keys that only shape causal normalisation: they cannot disagree when neither side normalises causally.
_CAUSAL_KEYS = ("causal_norm_window",)


def feature_mismatches(dataset_settings: dict[str, Any], model_settings: dict[str, Any]) -> list[str]:
    """Human-readable differences between two feature-extractor setting dicts."""
    problems = []
    dataset_settings = {**_ADDED_KEYS, **dataset_settings}
    model_settings = {**_ADDED_KEYS, **model_settings}
    with_pitch = dataset_settings["pitch"] or model_settings["pitch"]
    causal = "causal" in (dataset_settings.get("normalize"), model_settings.get("normalize"))
    for key in FEATURE_KEYS:
        if (key in _PITCH_KEYS and not with_pitch) or (key in _CAUSAL_KEYS and not causal):
            continue
        if key in dataset_settings and key in model_settings and dataset_settings[key] != model_settings[key]:
            problems.append(f"{key}: dataset {dataset_settings[key]!r} vs model {model_settings[key]!r}")
    return problems


def assert_features_match(dataset_settings: dict[str, Any], model_settings: dict[str, Any], dataset_dir: str) -> None:
    """Stop with a clear message when the dataset was prepared with other feature settings."""
    problems = feature_mismatches(dataset_settings, model_settings)
    if problems:
        raise ValueError(
            f"The features in {dataset_dir} were computed with other settings than the model uses ("
            + "; ".join(problems)
            + "). Prepare the data again with the model's settings (ai2text prepare ... with matching "
            "--n-mels/--hop-length/--pitch/--pitch-norm-window/...), or train with a recipe whose feature keys "
            "match the dataset."
        )
