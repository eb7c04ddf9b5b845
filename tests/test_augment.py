"""Waveform augmentation: each family's effect, its seeding, its bad input, and the collator that applies it."""

from __future__ import annotations

import dataclasses
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import TINY_RECIPE
from transformers import Wav2Vec2FeatureExtractor

from ai2text_hf.data.audio import featurize_batch
from ai2text_hf.data.augment import FAMILIES, Augmentation
from ai2text_hf.data.augment.chain import WaveformAugmenter
from ai2text_hf.data.augment.channel import TELEPHONE_BAND, apply_codec
from ai2text_hf.data.augment.noise import BabblePool, NoiseFolder, coloured_noise
from ai2text_hf.data.augment.room import RoomBank
from ai2text_hf.data.augment.vtlp import VocalTractWarp
from ai2text_hf.data.augment.waveform import speed_perturb, time_stretch, trim_silence
from ai2text_hf.data.collator import AudioCTCCollator
from ai2text_hf.feature_extraction_ai2text import AI2TextFeatureExtractor
from ai2text_hf.training.preflight import PreflightError, check_codecs
from ai2text_hf.training.recipe import RecipeError, load_recipe
from ai2text_hf.training.training_data import CollatorEpoch

RATE = 16000


def _speechlike(seconds: float = 2.0, seed: int = 0, silence: float = 0.0) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope, optionally between stretches of digital silence."""
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540), start=1))
    noise = np.random.default_rng(seed).standard_normal(len(t)) * 0.01
    gap = np.zeros(int(silence * RATE))
    return np.concatenate([gap, 0.2 * envelope * tone + noise, gap]).astype(np.float32)


def _power(wave: np.ndarray) -> float:
    return float(np.mean(np.square(wave, dtype=np.float64)))


def _only(family: str, **settings) -> Augmentation:
    """Options where ``family`` always applies and every other family never does."""
    probabilities = {f"{name}_prob": 1.0 if name == family else 0.0 for name in FAMILIES}
    return Augmentation(enabled=True, **{**probabilities, **settings})


def _band_power(wave: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    freqs = np.fft.rfftfreq(len(wave), 1 / RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def _write_noise_folder(root: Path) -> Path:
    """MUSAN-like nesting: noise at 8 kHz (resampled on read) and 16 kHz, plus a file that is not audio."""
    rng = np.random.default_rng(0)
    (root / "noise" / "free-sound").mkdir(parents=True)
    (root / "noise" / "sound-bible").mkdir(parents=True)
    sf.write(root / "noise" / "free-sound" / "hum.wav", 0.1 * rng.standard_normal(8000 * 3), 8000)
    sf.write(root / "noise" / "sound-bible" / "fan.flac", 0.1 * rng.standard_normal(RATE), RATE)
    (root / "noise" / "ANNOTATIONS").write_text("not audio")
    return root


# --- tempo, trimming ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_divides_the_length_by_the_factor(factor: float) -> None:
    wave = _speechlike()
    out = speed_perturb(wave, factor, RATE)
    assert out.dtype == np.float32
    assert len(out) == pytest.approx(len(wave) / factor, rel=0.002)


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_time_stretch_divides_the_length_by_the_rate(rate: float) -> None:
    wave = _speechlike()
    assert len(time_stretch(wave, rate, RATE)) == pytest.approx(len(wave) / rate, rel=0.01)


def test_trimming_removes_leading_and_trailing_silence() -> None:
    speech = _speechlike(1.0)
    trimmed = trim_silence(_speechlike(1.0, silence=0.4), top_db=40)
    assert len(speech) <= len(trimmed) <= len(speech) + 2 * 400  # at most a frame of silence left at each end
    augmenter = WaveformAugmenter(_only("trim"))
    out = augmenter(_speechlike(1.0, silence=0.4), 0, "u")
    assert np.abs(out[:400]).max() > 0.01  # speech within the first 25 ms


def test_padding_adds_lead_in_and_tail_within_the_range() -> None:
    wave = _speechlike(0.5)
    out = WaveformAugmenter(_only("pad", pad_seconds=[0.2, 0.3]))(wave, 0, "u")
    lead = int(np.flatnonzero(out)[0])
    assert 0.2 * RATE <= lead <= 0.3 * RATE and 0.4 * RATE <= len(out) - len(wave) <= 0.6 * RATE


# --- additive noise ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("colour, exponent", [("white", 0.0), ("pink", 1.0), ("brown", 2.0)])
def test_coloured_noise_has_its_spectral_slope(colour: str, exponent: float) -> None:
    noise = coloured_noise(colour, 4 * RATE, np.random.default_rng(0))
    octave_ratio = _band_power(noise, 1000, 2000) / _band_power(noise, 2000, 4000)
    assert octave_ratio == pytest.approx(2 ** (exponent - 1), rel=0.15)  # the octave above is twice as wide


@pytest.mark.parametrize("source", ["white", "pink", "brown", "babble", "folder"])
def test_noise_is_added_at_an_snr_inside_the_range(source: str, tmp_path: Path) -> None:
    pool = BabblePool([(f"other{i}", _speechlike(1.5, seed=i)) for i in range(4)])
    folder = str(_write_noise_folder(tmp_path)) if source == "folder" else None
    options = _only("noise", noise_sources=[source], noise_snr_db=[8.0, 12.0], noise_dir=folder)
    augmenter = WaveformAugmenter(options, babble=pool)
    wave = _speechlike(2.0)
    snrs = []
    for utterance in ("a", "b", "c"):
        noisy = augmenter(wave, 0, utterance)
        snrs.append(10 * np.log10(_power(wave) / _power(noisy - wave)))
    assert all(8.0 - 0.1 <= snr <= 12.0 + 0.1 for snr in snrs), snrs
    assert len(set(np.round(snrs, 3))) == 3  # drawn per utterance


def test_babble_never_uses_the_utterance_itself() -> None:
    wave = _speechlike(1.0)
    alone = BabblePool([("u", wave)])
    options = _only("noise", noise_sources=["babble"], noise_snr_db=[0.0, 0.0])
    assert np.array_equal(WaveformAugmenter(options, babble=alone)(wave, 0, "u"), wave)
    assert not np.array_equal(WaveformAugmenter(options, babble=alone)(wave, 0, "v"), wave)


def test_a_noise_file_that_fails_to_decode_is_skipped_counted_and_logged(tmp_path: Path, caplog) -> None:
    root = _write_noise_folder(tmp_path)
    (root / "noise" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    options = _only("noise", noise_sources=["folder"], noise_dir=str(root), noise_snr_db=[10.0, 10.0])
    fresh = WaveformAugmenter(options)
    wave = _speechlike(1.0)
    with caplog.at_level(logging.WARNING, logger="ai2text_hf.data.augment.noise"):
        outputs = {f"u{i}": fresh(wave, 0, f"u{i}") for i in range(12)}
    assert fresh.skipped_noise_files == 1 and fresh.noise_folder.skipped == 1
    warnings = [r.getMessage() for r in caplog.records if "broken.wav" in r.getMessage()]
    assert len(warnings) == 1 and "1 unreadable noise file of 3" in warnings[0]
    assert all(not np.array_equal(out, wave) for out in outputs.values())  # every utterance still got noise
    # An utterance's noise does not depend on whether the broken file was met before it.
    assert all(np.array_equal(WaveformAugmenter(options)(wave, 0, uid), out) for uid, out in outputs.items())
    with caplog.at_level(logging.WARNING, logger="ai2text_hf.training"):
        CollatorEpoch(AudioCTCCollator(AI2TextFeatureExtractor(), fresh)).on_epoch_end(None, None, None)
    assert "1 noise file could not be decoded and was skipped so far" in caplog.text


# --- room, channel, level ----------------------------------------------------------------------------------


def test_reverberation_lengthens_the_decay_and_the_bank_is_seeded() -> None:
    burst = np.zeros(RATE, np.float32)
    burst[: RATE // 5] = np.random.default_rng(0).standard_normal(RATE // 5) * 0.1
    bank = RoomBank(2, [0.5, 0.5], RATE, seed=3)
    wet = bank.reverberate(burst, np.random.default_rng(0))
    after = slice(RATE // 5 + 800, RATE // 5 + 3200)  # 50-200 ms after the burst ends
    assert len(wet) == len(burst) and not burst[after].any()
    assert 10 * np.log10(_power(wet[after]) / _power(wet[: RATE // 5])) > -30
    assert bank.build_seconds < 30
    again = RoomBank(2, [0.5, 0.5], RATE, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(bank.rirs, again.rirs))


@pytest.mark.parametrize("codec", ["telephone", "mulaw", "gsm", "mp3", "opus"])
def test_codec_round_trip_keeps_the_length_and_changes_the_audio(codec: str) -> None:
    wave = (0.1 * np.random.default_rng(0).standard_normal(RATE)).astype(np.float32)
    out = apply_codec(codec, wave, RATE, np.random.default_rng(0), Augmentation())
    assert out.dtype == np.float32 and len(out) == len(wave) and np.isfinite(out).all()
    assert not np.allclose(out, wave, atol=1e-3)
    if codec in ("telephone", "mulaw", "gsm"):
        band = _band_power(out, *TELEPHONE_BAND)
        assert _band_power(out, 4000, RATE / 2) < 1e-3 * band  # the telephone band: nothing above 4 kHz
        assert _band_power(out, 0, 150) < 0.05 * band


def test_gain_floor_and_clip_set_the_level() -> None:
    wave = _speechlike() * 0.1
    assert _power(WaveformAugmenter(_only("gain", gain_db=[-6.0, -6.0]))(wave, 0, "u")) / _power(wave) == (
        pytest.approx(10 ** (-6 / 10), rel=1e-4)
    )
    floor = WaveformAugmenter(_only("floor", floor_dbfs=[-60.0, -60.0]))(np.zeros(RATE, np.float32), 0, "u")
    assert 10 * np.log10(_power(floor)) == pytest.approx(-60.0, abs=0.2)  # no exact digital silence left
    loud = WaveformAugmenter(_only("gain", gain_db=[20.0, 20.0]))(wave * 10, 0, "u")
    assert np.abs(loud).max() == pytest.approx(1.0)


# --- the chain ---------------------------------------------------------------------------------------------


def _everything() -> WaveformAugmenter:
    options = Augmentation(enabled=True, **{f"{family}_prob": 1.0 for family in FAMILIES}, room_bank_size=2)
    return WaveformAugmenter(options, seed=5, babble=BabblePool([(f"o{i}", _speechlike(1.0, i)) for i in range(3)]))


def test_augmentation_is_reproducible_per_seed_epoch_and_utterance() -> None:
    augmenter, wave = _everything(), _speechlike(1.0)
    first = augmenter(wave, 2, "utt-1")
    assert np.array_equal(first, augmenter(wave, 2, "utt-1"))
    assert not np.array_equal(first, augmenter(wave, 3, "utt-1"))
    assert not np.array_equal(first, augmenter(wave, 2, "utt-2"))
    other_seed = WaveformAugmenter(augmenter.options, seed=6, babble=augmenter.babble)
    assert not np.array_equal(first, other_seed(wave, 2, "utt-1"))


def test_one_familys_probability_leaves_the_others_draws_alone() -> None:
    wave = _speechlike(1.0)
    noise_only = _only("noise", noise_sources=["white"])
    with_gain = dataclasses.replace(noise_only, gain_prob=1.0, gain_db=[0.0, 0.0])
    assert np.array_equal(WaveformAugmenter(noise_only)(wave, 0, "u"), WaveformAugmenter(with_gain)(wave, 0, "u"))


def test_length_changes_are_skipped_when_the_transcript_would_not_fit() -> None:
    augmenter = WaveformAugmenter(_only("tempo", tempo=[1.5, 1.5], speed_prob=1.0, speed=[1.2, 1.2]))
    wave = _speechlike()
    assert len(augmenter(wave, 0, "u")) < len(wave) / 1.7
    assert np.array_equal(augmenter(wave, 0, "u", fits=lambda samples: samples >= len(wave)), wave)
    padded = _speechlike(1.0, silence=0.3)
    trim = WaveformAugmenter(_only("trim"))
    assert np.array_equal(trim(padded, 0, "u", fits=lambda samples: samples >= len(padded)), padded)


def test_all_probabilities_zero_leave_audio_untouched() -> None:
    augmenter = WaveformAugmenter(Augmentation(enabled=True, **{f"{family}_prob": 0.0 for family in FAMILIES}))
    wave = _speechlike()
    assert np.array_equal(augmenter(wave, 0, "u"), wave)


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"augmentation.noise_snr_db": [30, 5]}, r"augmentation.noise_snr_db is inverted"),
        ({"augmentation.noise_prob": 1.5}, r"augmentation.noise_prob is a probability between 0 and 1, got 1.5"),
        ({"augmentation.codecs": ["mp3", "amr"]}, r"augmentation.codecs: unknown 'amr'; choose from .*opus"),
        ({"augmentation.noise_sources": ["violet"]}, r"augmentation.noise_sources: unknown 'violet'"),
        ({"augmentation.speed": [0.0, 1.1]}, r"augmentation.speed values must be above 0.0"),
        ({"augmentation.room_bank_size": 0}, r"augmentation.room_bank_size must be a whole number of at least 1"),
        ({"augmentation.noise_sources": ["folder"]}, r"lists 'folder' but augmentation.noise_dir is not set"),
        ({"augmentation.prob": 0.3}, r"augmentation.types and augmentation.prob were replaced by one probability"),
        ({"augmentation.stretch": [0.9, 1.1]}, r"augmentation.stretch is now augmentation.tempo"),
        ({"augmentation.speed_perturb": [0.9, 1.1]}, r"speed_perturb is now augmentation.speed"),
    ],
)
def test_impossible_augmentation_values_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        load_recipe(TINY_RECIPE, overrides)


def test_a_noise_folder_that_is_missing_or_holds_no_audio_is_refused(tmp_path: Path) -> None:
    keys = {"augmentation.enabled": True, "augmentation.noise_sources": ["pink", "folder"]}
    with pytest.raises(RecipeError, match=r"augmentation.noise_dir .*nowhere is not a folder"):
        load_recipe(TINY_RECIPE, {**keys, "augmentation.noise_dir": str(tmp_path / "nowhere")})
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "README.txt").write_text("no audio here")
    with pytest.raises(RecipeError, match=r"augmentation.noise_dir .*empty holds no audio files"):
        load_recipe(TINY_RECIPE, {**keys, "augmentation.noise_dir": str(tmp_path / "empty")})
    found = NoiseFolder(_write_noise_folder(tmp_path / "musan"), RATE).files
    assert [p.name for p in found] == ["hum.wav", "fan.flac"]


def test_preflight_reports_a_codec_this_machine_lacks(monkeypatch) -> None:
    options = Augmentation(enabled=True, codecs=["telephone", "opus"])
    check_codecs(options)  # both run here
    monkeypatch.setitem(sys.modules, "av", None)  # as on a machine without PyAV
    with pytest.raises(PreflightError, match=r"augmentation.codecs lists opus, .*pip install av, or remove it"):
        check_codecs(options)
    check_codecs(dataclasses.replace(options, channel_prob=0.0))  # not drawn: not checked


# --- VTLP and the collator ---------------------------------------------------------------------------------


def test_vtlp_moves_formants_and_leaves_the_pitch_columns() -> None:
    tone = (0.2 * np.sin(2 * np.pi * 1000 * np.arange(RATE) / RATE)).astype(np.float32)
    unnormalised = AI2TextFeatureExtractor(normalize="none")  # so the tone's mel bin stands out
    warp = VocalTractWarp(unnormalised)
    plain = torch.from_numpy(unnormalised(tone, sampling_rate=RATE, padding=False)["input_features"][0])
    torch.testing.assert_close(warp(plain, 1.0), plain, atol=1e-5, rtol=0)
    # A factor above 1 moves the tone's energy to a higher mel bin (a shorter vocal tract), below 1 lower.
    peak = int(plain.mean(0).argmax())
    assert int(warp(plain, 1.1).mean(0).argmax()) > peak > int(warp(plain, 0.9).mean(0).argmax())

    extractor = AI2TextFeatureExtractor(pitch=True)
    collator = AudioCTCCollator(extractor, WaveformAugmenter(_only("vtlp", vtlp_warp=[1.1, 1.1])))
    items = [{"id": "u0", "audio": _speechlike(1.0), "labels": [5, 6]}]
    warped, clean = collator(items)["input_features"], AudioCTCCollator(extractor)(items)["input_features"]
    assert torch.equal(warped[..., 80:], clean[..., 80:]) and not torch.allclose(warped[..., :80], clean[..., :80])
    # Still normalised per bin over the utterance, as the extractor leaves its features.
    torch.testing.assert_close(warped[0, :, :80].mean(0), torch.zeros(80), atol=1e-4, rtol=0)


def test_vtlp_is_refused_for_a_feature_extractor_that_is_not_ours() -> None:
    with pytest.raises(ValueError, match=r"augmentation.vtlp_prob .*Wav2Vec2FeatureExtractor.*vtlp_prob 0"):
        AudioCTCCollator(Wav2Vec2FeatureExtractor(), WaveformAugmenter(_only("vtlp")))


def test_on_the_fly_collator_gives_the_features_preparation_stores() -> None:
    extractor = AI2TextFeatureExtractor(pitch=True)
    waves = [_speechlike(1.0, seed=1), _speechlike(1.7, seed=2)]
    items = [{"id": f"u{i}", "audio": w, "labels": [5, 6, 7][: i + 2]} for i, w in enumerate(waves)]
    batch = AudioCTCCollator(extractor)(items)
    stored = featurize_batch(waves, extractor)
    for row, (features, frames) in enumerate(zip(stored, batch["attention_mask"].sum(-1).tolist())):
        assert frames == len(features)
        collated = batch["input_features"][row, :frames].numpy()
        np.testing.assert_allclose(collated[:, :80], features[:, :80], atol=1e-4)
        # Pitch columns: float rounding differs between FFT batch shapes, and a frame at the voicing threshold
        # may flip, which moves the utterance's mean log-F0 a little; nothing more.
        np.testing.assert_allclose(collated[:, 80:], features[:, 80:], atol=0.05)
    assert batch["labels"].tolist() == [[5, 6, -100], [5, 6, 7]]


def test_augmenting_collator_changes_train_audio_per_epoch_whatever_the_batch() -> None:
    extractor = AI2TextFeatureExtractor()
    collator = AudioCTCCollator(extractor, _everything())
    target = {"id": "u0", "audio": _speechlike(1.0), "labels": [5, 6]}
    other = {"id": "u1", "audio": _speechlike(1.3, seed=1), "labels": [7]}
    first = collator([target])["input_features"][0]
    frames = first.shape[0]
    # The same audio, so the same features up to the FFT's rounding in another batch shape.
    torch.testing.assert_close(collator([other, target])["input_features"][1, :frames], first, atol=1e-4, rtol=0)
    collator.epoch = 1
    assert not torch.equal(first, collator([target])["input_features"][0])
    assert not torch.equal(first, AudioCTCCollator(extractor)([target])["input_features"][0])


def test_collator_keeps_the_tempo_when_the_labels_would_not_fit() -> None:
    extractor = AI2TextFeatureExtractor()
    wave = _speechlike(1.0)

    def frames(samples: int) -> int:
        return int(extractor.num_frames(samples)) // 4

    fitting = [5, 5] + [6 + i % 40 for i in range(frames(len(wave)) - 3)]  # the repeat needs a blank: all frames
    collator = AudioCTCCollator(extractor, WaveformAugmenter(_only("speed", speed=[1.5, 1.5])), frames)
    kept = collator([{"id": "u", "audio": wave, "labels": fitting}])
    assert int(kept["attention_mask"].sum()) == extractor.num_frames(len(wave))
    faster = collator([{"id": "u", "audio": wave, "labels": fitting[:5]}])
    assert int(faster["attention_mask"].sum()) == extractor.num_frames(round(len(wave) / 1.5))
