"""Pitch features (``pitch=True``): what the three columns measure, and the model's path for them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ai2text_hf import AI2TextConfig, AI2TextFeatureExtractor, AI2TextForCTC
from ai2text_hf.data import load_audio, load_prepared, prepare_dataset, read_manifest
from ai2text_hf.data.features import feature_mismatches
from ai2text_hf.feature_extraction_ai2text import PITCH_FEATURES, PITCH_SCALE

SR = 16000


def _voice(f0_start: float, f0_end: float, seconds: float = 1.0, silence: float = 0.0) -> np.ndarray:
    """A vowel-like harmonic complex whose F0 glides geometrically, after ``silence`` seconds of zeros."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = f0_start * (f0_end / f0_start) ** (t / seconds)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    wave = sum(np.sin(k * phase) / k for k in range(1, 9) if k * f0_end < SR / 2)
    return np.concatenate([np.zeros(int(silence * SR)), 0.2 * wave]).astype(np.float32)


def _pitch_columns(wave: np.ndarray, **settings) -> np.ndarray:
    extractor = AI2TextFeatureExtractor(pitch=True, **settings)
    features = extractor(wave, sampling_rate=SR, padding=False)["input_features"][0]
    assert features.shape[1] == 80 + PITCH_FEATURES
    return features[:, 80:]


def test_pitch_contour_follows_a_rising_tone_whatever_the_voice_height() -> None:
    # Centred on the whole input, the contour keeps the glide's full height.
    low, high = _pitch_columns(_voice(100, 150), pitch_norm_window=None), _pitch_columns(_voice(200, 300))
    for columns in (low, _pitch_columns(_voice(200, 300), pitch_norm_window=None)):
        middle = columns[10:-10]
        assert (middle[:, 0] > 0.8).all(), "a steady harmonic voice is voiced throughout"
        octaves = middle[:, 1] / PITCH_SCALE
        assert np.all(np.diff(octaves) > -0.01), "the contour rises"
        # 80 frames of a glide of log2(1.5) octaves per 100 frames
        assert octaves[-1] - octaves[0] == pytest.approx(0.8 * np.log2(1.5), abs=0.03)
        assert middle[:, 2].mean() > 0, "the slope column says rising"
    # Centred on the voice's own mean (here the default sliding window): an octave higher voice gives the
    # same contour, still rising.
    low = _pitch_columns(_voice(100, 150))
    np.testing.assert_allclose(low[10:-10, 1], high[10:-10, 1], atol=0.03 * PITCH_SCALE)
    assert np.all(np.diff(high[10:-10, 1]) > -0.01) and high[-10, 1] > high[10, 1] + 0.5


def test_a_change_of_speaker_keeps_each_voice_centred_and_voiced() -> None:
    # A low and a high voice (an octave apart, each a level tone) one after the other, as in a long recording.
    columns = _pitch_columns(np.concatenate([_voice(110, 110, seconds=2.5), _voice(220, 220, seconds=2.5)]))
    low, high = slice(20, 150), slice(350, 480)  # frames more than 0.75 s from the change at frame 250
    for part in (low, high):
        assert (columns[part, 0] > 0.8).all(), "neither voice is taken for the other's octave error"
        assert np.abs(columns[part, 1] / PITCH_SCALE).max() < 0.05
    # Centred on the whole input instead, voices a fifth apart each sit off-centre by half the interval.
    wave = np.concatenate([_voice(110, 110, seconds=2.5), _voice(165, 165, seconds=2.5)])
    whole = _pitch_columns(wave, pitch_norm_window=None)[:, 1] / PITCH_SCALE
    interval = np.log2(165 / 110)
    assert whole[low].mean() == pytest.approx(-interval / 2, abs=0.05)
    assert whole[high].mean() == pytest.approx(interval / 2, abs=0.05)


def test_pitch_settings_saved_before_the_window_key_keep_centring_on_the_whole_input(tmp_path: Path) -> None:
    AI2TextFeatureExtractor(pitch=True).save_pretrained(tmp_path)
    saved = tmp_path / "preprocessor_config.json"
    settings = json.loads(saved.read_text())
    assert settings["pitch_norm_window"] == 1.5
    del settings["pitch_norm_window"]
    saved.write_text(json.dumps(settings))
    assert AI2TextFeatureExtractor.from_pretrained(tmp_path).pitch_norm_window is None


def test_a_falling_tone_has_a_negative_slope() -> None:
    columns = _pitch_columns(_voice(180, 120))[10:-10]
    assert columns[-1, 1] < columns[0, 1] and columns[:, 2].mean() < 0


def test_silence_is_unvoiced_and_holds_the_mean_pitch() -> None:
    columns = _pitch_columns(_voice(150, 150, seconds=0.8, silence=0.5))
    silent = columns[:45]  # the first 0.45 s: only digital silence inside the 40 ms windows
    assert (silent[:, 0] == 0).all()
    np.testing.assert_array_equal(silent[:, 1:], 0.0)  # no pitch heard yet: the utterance's mean, i.e. 0
    assert (columns[60:-10, 0] > 0.8).all()


def test_pitch_features_of_a_padded_batch_equal_one_by_one() -> None:
    extractor = AI2TextFeatureExtractor(pitch=True)
    waves = [_voice(120, 170, 0.4), _voice(220, 160, 1.7), _voice(90, 95, 0.9, silence=0.2)]
    batch = extractor(waves, sampling_rate=SR)
    assert batch["input_features"].shape[2] == extractor.feature_dim == 83
    for index, wave in enumerate(waves):
        alone = extractor(wave, sampling_rate=SR)["input_features"][0]
        frames = int(batch["attention_mask"][index].sum())
        np.testing.assert_allclose(batch["input_features"][index, :frames], alone, rtol=1e-5, atol=1e-5)
        assert (batch["input_features"][index, frames:] == 0).all()


def _pitch_model(**overrides) -> AI2TextForCTC:
    torch.manual_seed(0)
    options = dict(
        vocab_size=96, d_model=32, num_encoder_layers=2, num_heads=2, d_ff=64, subsampling_channels=8,
        conv_kernel_size=7, dropout=0.0, apply_spec_augment=False, num_pitch_features=PITCH_FEATURES,
    )
    return AI2TextForCTC(AI2TextConfig(**{**options, **overrides})).eval()


def _batch(waves: list[np.ndarray]) -> dict[str, torch.Tensor]:
    out = AI2TextFeatureExtractor(pitch=True)(waves, sampling_rate=SR, return_tensors="pt")
    return {"input_features": out["input_features"], "attention_mask": out["attention_mask"]}


@pytest.mark.parametrize("subsampling_factor", [2, 4, 8])
def test_model_with_pitch_gives_a_padded_utterance_its_own_logits(subsampling_factor: int) -> None:
    model = _pitch_model(subsampling_factor=subsampling_factor)
    waves = [_voice(120, 170, 0.5), _voice(220, 160, 2.1)]
    batch = _batch(waves)
    with torch.no_grad():
        batched = model(**batch).logits
        for index, wave in enumerate(waves):
            alone = model(**_batch([wave])).logits[0]
            torch.testing.assert_close(batched[index, : alone.shape[0]], alone, rtol=1e-5, atol=1e-5)


def test_model_reads_the_pitch_columns() -> None:
    model = _pitch_model()
    inputs = _batch([_voice(120, 170, 1.0)])
    flat = inputs["input_features"].clone()
    flat[..., 80:] = 0.0
    with torch.no_grad():
        assert not torch.allclose(model(**inputs).logits, model(input_features=flat).logits, atol=1e-4)


def test_frequency_masks_never_cover_the_pitch_columns() -> None:
    model = _pitch_model(num_freq_masks=6, freq_mask_width=80, num_time_masks=0)
    torch.manual_seed(3)
    masked = model._spec_augment(torch.ones(4, 50, 83), torch.full((4,), 50))
    assert (masked[..., 80:] == 1).all()
    assert (masked[..., :80] == 0).any()


def test_a_dataset_without_pitch_does_not_match_a_pitch_model() -> None:
    without = AI2TextFeatureExtractor().to_dict()
    with_pitch = AI2TextFeatureExtractor(pitch=True).to_dict()
    assert feature_mismatches(without, with_pitch) == ["pitch: dataset False vs model True"]
    saved_before_pitch = {k: v for k, v in without.items() if k != "pitch"}  # manifests written before the key
    assert feature_mismatches(saved_before_pitch, with_pitch) == ["pitch: dataset False vs model True"]
    assert feature_mismatches(saved_before_pitch, without) == []


def test_a_dataset_centred_on_the_whole_input_does_not_match_a_windowed_pitch_model() -> None:
    windowed = AI2TextFeatureExtractor(pitch=True).to_dict()
    saved_before_window = {k: v for k, v in windowed.items() if k != "pitch_norm_window"}
    assert feature_mismatches(saved_before_window, windowed) == ["pitch_norm_window: dataset None vs model 1.5"]
    # Without pitch the window means nothing: no re-preparation for it.
    without = {k: v for k, v in AI2TextFeatureExtractor().to_dict().items() if k != "pitch_norm_window"}
    assert feature_mismatches(without, AI2TextFeatureExtractor(pitch_norm_window=3.0).to_dict()) == []


def test_prepare_stores_the_pitch_columns_and_says_so(tmp_path: Path) -> None:
    import soundfile as sf

    rows = []
    for index, (split, f0) in enumerate([("train", 110), ("train", 140), ("val", 180), ("test", 210)]):
        sf.write(tmp_path / f"{index}.wav", _voice(f0, f0 * 1.2, 0.8), SR)
        rows.append(f"{index}.wav,xin chào,0.8,{split},spk{index}")
    (tmp_path / "metadata.csv").write_text(
        "file_path,transcript,duration,split,speaker_id\n" + "\n".join(rows) + "\n", encoding="utf-8"
    )
    extractor = AI2TextFeatureExtractor(pitch=True)
    prepare_dataset(tmp_path / "metadata.csv", tmp_path / "v1", feature_extractor=extractor, progress=False)
    assert read_manifest(tmp_path / "v1")["feature_extractor"]["pitch"] is True
    row = load_prepared(tmp_path / "v1")["train"].with_format("numpy")[0]
    wave, _ = load_audio(tmp_path / "0.wav")  # what prepare decoded: the 16-bit WAV, not the float voice
    np.testing.assert_allclose(
        row["input_features"], extractor(wave, sampling_rate=SR, padding=False)["input_features"][0], atol=1e-5
    )


def _voice_csv(tmp_path: Path) -> Path:
    """A three-row metadata CSV (train, val, test) of one steady voice each."""
    import soundfile as sf

    rows = []
    for index, split in enumerate(["train", "val", "test"]):
        sf.write(tmp_path / f"{index}.wav", _voice(120, 150, 0.6), SR)
        rows.append(f"{index}.wav,xin chào,0.6,{split},spk{index}")
    (tmp_path / "metadata.csv").write_text(
        "file_path,transcript,duration,split,speaker_id\n" + "\n".join(rows) + "\n", encoding="utf-8"
    )
    return tmp_path / "metadata.csv"


@pytest.mark.parametrize(("flag", "stored"), [(None, 1.5), ("3", 3.0), ("0", None)])
def test_prepare_pitch_norm_window_flag_reaches_the_manifest(tmp_path: Path, flag: str | None, stored) -> None:
    from ai2text_hf.cli import main

    args = ["prepare", "--csv", str(_voice_csv(tmp_path)), "--output", str(tmp_path / "v1"), "--pitch"]
    assert main(args + (["--pitch-norm-window", flag] if flag else []) + ["--num-proc", "1"]) == 0
    assert read_manifest(tmp_path / "v1")["feature_extractor"]["pitch_norm_window"] == stored


def test_prepare_refuses_a_negative_pitch_norm_window_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from ai2text_hf.cli import main

    args = ["prepare", "--csv", str(_voice_csv(tmp_path)), "--output", str(tmp_path / "v1"), "--pitch"]
    assert main(args + ["--pitch-norm-window", "-1", "--num-proc", "1"]) != 0
    assert "pitch_norm_window must be a positive number of seconds" in capsys.readouterr().err
    assert not (tmp_path / "v1").exists()
    with pytest.raises(ValueError, match="pitch_norm_window must be a positive number"):
        AI2TextFeatureExtractor(pitch=True, pitch_norm_window=0)


def test_recipe_pitch_norm_window_null_centres_on_the_whole_utterance() -> None:
    from ai2text_hf.training.initial_model import recipe_feature_extractor
    from ai2text_hf.training.recipe import RecipeError, load_recipe

    assert recipe_feature_extractor(load_recipe(None, {"pitch": True})).pitch_norm_window == 1.5
    assert recipe_feature_extractor(load_recipe(None, {"pitch_norm_window": None})).pitch_norm_window is None
    with pytest.raises(RecipeError, match="pitch_norm_window must be a positive number"):
        load_recipe(None, {"pitch_norm_window": 0})


def test_a_pitch_model_exports_to_onnx_with_the_same_logits(tmp_path: Path) -> None:
    from ai2text_hf import AI2TextProcessor, AI2TextTokenizer
    from ai2text_hf.export import export_model

    folder = tmp_path / "model"
    _pitch_model().save_pretrained(folder)
    processor = AI2TextProcessor(feature_extractor=AI2TextFeatureExtractor(pitch=True), tokenizer=AI2TextTokenizer())
    processor.save_pretrained(folder)
    report = export_model(folder, tmp_path / "onnx").report
    assert report["parity"]["max_abs_logit_diff"] < 1e-3
