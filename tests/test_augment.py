"""Waveform augmentation: each type's effect, its seeding, and the on-the-fly collator that applies it."""

from __future__ import annotations

import numpy as np
import pytest

from ai2text_hf.data.audio import featurize_batch
from ai2text_hf.data.augment import (
    WaveformAugmenter,
    add_noise,
    apply_gain,
    shift_with_silence,
    speed_perturb,
    time_stretch,
)
from ai2text_hf.data.collator import AudioCTCCollator
from ai2text_hf.feature_extraction_ai2text import AI2TextFeatureExtractor

RATE = 16000


def _speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a syllable-rate envelope: enough structure for tempo changes to act on."""
    t = np.arange(int(seconds * RATE)) / RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540), start=1))
    noise = np.random.default_rng(seed).standard_normal(len(t)) * 0.01
    return (0.2 * envelope * tone + noise).astype(np.float32)


def _rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_divides_the_length_by_the_factor(factor: float) -> None:
    wave = _speechlike()
    out = speed_perturb(wave, factor, RATE)
    assert out.dtype == np.float32
    assert len(out) == pytest.approx(len(wave) / factor, rel=0.002)


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_time_stretch_divides_the_length_by_the_rate(rate: float) -> None:
    wave = _speechlike()
    assert len(time_stretch(wave, rate)) == pytest.approx(len(wave) / rate, rel=0.01)


@pytest.mark.parametrize("snr_db", [5.0, 20.0])
def test_noise_is_added_at_the_requested_snr(snr_db: float) -> None:
    wave = _speechlike(seconds=4.0)
    noisy = add_noise(wave, snr_db, np.random.default_rng(1))
    measured = 20 * np.log10(_rms(wave) / _rms(noisy - wave))
    assert measured == pytest.approx(snr_db, abs=0.2)
    assert np.array_equal(add_noise(np.zeros(100, np.float32), snr_db, np.random.default_rng(1)), np.zeros(100))


def test_volume_applies_the_gain_and_stays_in_full_scale() -> None:
    wave = _speechlike() * 0.1
    assert _rms(apply_gain(wave, 6.0)) / _rms(wave) == pytest.approx(10 ** (6 / 20), rel=1e-5)
    assert _rms(apply_gain(wave, -6.0)) / _rms(wave) == pytest.approx(10 ** (-6 / 20), rel=1e-5)
    assert np.abs(apply_gain(np.full(10, 0.9, np.float32), 12.0)).max() <= 1.0


def test_shift_moves_the_speech_without_cutting_it() -> None:
    wave = _speechlike(seconds=0.5)
    later, earlier = shift_with_silence(wave, 800), shift_with_silence(wave, -800)
    assert len(later) == len(earlier) == len(wave) + 800
    assert np.array_equal(later[800:], wave) and not later[:800].any()
    assert np.array_equal(earlier[: len(wave)], wave) and not earlier[len(wave) :].any()


def test_augmentation_is_reproducible_per_seed_epoch_and_utterance() -> None:
    augmenter = WaveformAugmenter(prob=1.0, speed_perturb=[0.9, 1.1], seed=5)
    wave = _speechlike()
    first = augmenter(wave, augmenter.rng(epoch=2, utterance_id="utt-1"))
    again = augmenter(wave, augmenter.rng(epoch=2, utterance_id="utt-1"))
    assert np.array_equal(first, again)
    other_epoch = augmenter(wave, augmenter.rng(epoch=3, utterance_id="utt-1"))
    other_utterance = augmenter(wave, augmenter.rng(epoch=2, utterance_id="utt-2"))
    other_seed = WaveformAugmenter(prob=1.0, speed_perturb=[0.9, 1.1], seed=6)
    assert not np.array_equal(first, other_epoch) and not np.array_equal(first, other_utterance)
    assert not np.array_equal(first, other_seed(wave, other_seed.rng(epoch=2, utterance_id="utt-1")))


def test_tempo_change_is_skipped_when_the_transcript_would_not_fit() -> None:
    augmenter = WaveformAugmenter(types=["stretch"], prob=1.0, stretch=[1.5, 1.5], speed_perturb=[1.2])
    wave = _speechlike()
    assert len(augmenter(wave, augmenter.rng(0, "u"))) < len(wave) / 1.7
    kept = augmenter(wave, augmenter.rng(0, "u"), fits=lambda samples: samples >= len(wave))
    assert np.array_equal(kept, wave)


def test_prob_zero_and_no_speed_factors_leave_audio_untouched() -> None:
    augmenter = WaveformAugmenter(prob=0.0)
    wave = _speechlike()
    assert np.array_equal(augmenter(wave, augmenter.rng(0, "u")), wave)


def test_bad_augmentation_settings_are_refused() -> None:
    with pytest.raises(ValueError, match=r"Unknown augmentation type.*'reverb'.*noise"):
        WaveformAugmenter(types=["noise", "reverb"])
    with pytest.raises(ValueError, match="prob must be between 0 and 1"):
        WaveformAugmenter(prob=1.5)
    with pytest.raises(ValueError, match=r"stretch must be \[low, high\]"):
        WaveformAugmenter(stretch=[1.1, 0.9])


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


def test_augmenting_collator_changes_train_audio_per_epoch() -> None:
    extractor = AI2TextFeatureExtractor()
    items = [{"id": "u0", "audio": _speechlike(1.0), "labels": [5, 6]}]
    collator = AudioCTCCollator(extractor, WaveformAugmenter(prob=1.0, types=["noise"], seed=1))
    first = collator(items)["input_features"]
    assert np.array_equal(first, collator(items)["input_features"])
    collator.epoch = 1
    assert not np.array_equal(first, collator(items)["input_features"])
    assert not np.array_equal(first, AudioCTCCollator(extractor)(items)["input_features"])


def test_collator_keeps_the_tempo_when_the_labels_would_not_fit() -> None:
    extractor = AI2TextFeatureExtractor()
    wave = _speechlike(1.0)

    def frames(samples: int) -> int:
        return int(extractor.num_frames(samples)) // 4

    fitting = [5, 5] + [6 + i % 40 for i in range(frames(len(wave)) - 3)]  # the repeat needs a blank: all frames
    collator = AudioCTCCollator(extractor, WaveformAugmenter(prob=0.0, speed_perturb=[1.5]), frames)
    kept = collator([{"id": "u", "audio": wave, "labels": fitting}])
    assert int(kept["attention_mask"].sum()) == extractor.num_frames(len(wave))
    faster = collator([{"id": "u", "audio": wave, "labels": fitting[:5]}])
    assert int(faster["attention_mask"].sum()) == extractor.num_frames(round(len(wave) / 1.5))
