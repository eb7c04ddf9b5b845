"""Tests for the espeak-ng synthetic corpus (tiny corpora so they run in seconds)."""

from __future__ import annotations

import csv
import re
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ai2text_hf.data.synth import (
    GRID_FIELDS,
    METADATA_COLUMNS,
    EspeakNotFoundError,
    SynthConfig,
    _plan,
    _reserve_settings,
    default_sentences_path,
    read_sentences,
    synthesize_corpus,
)
from ai2text_hf.normalization_vi import normalize_text, unknown_characters

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

SENTENCES = [
    "Hôm nay trời đẹp.",
    "Tôi đi học bằng xe đạp.",
    "Mẹ nấu cơm, bố đọc báo.",
    "Con mèo nằm ngủ trên ghế.",
    "Hà Nội là thủ đô của Việt Nam.",
    "Chúng tôi uống trà buổi sáng.",
    "Cô giáo đang giảng bài.",
    "Anh ấy chơi đàn rất hay.",
    "Mùa thu lá vàng rơi.",
    "Em bé cười rất tươi.",
    "Quyển sách này rất thú vị.",
    "Ngày mai chúng ta đi biển.",
]
TINY = {"val_sentences": 2, "test_sentences": 3, "train_renditions": 2, "workers": 2}


def _read(metadata: Path) -> list[dict[str, str]]:
    with metadata.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _planned(corpus: Path) -> dict[str, object]:
    """file_path -> the job the corpus was rendered from (the plan is a pure function of sentences and config)."""
    jobs, _ = _plan(SENTENCES, SynthConfig(**TINY))
    return {job.file_path: job for job in jobs}


def _frame_db(audio: np.ndarray, frame: int = 160) -> np.ndarray:
    """RMS level in dBFS of consecutive 10 ms frames."""
    frames = audio[: len(audio) // frame * frame].astype(np.float64).reshape(-1, frame) / 32768
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    sentence_file = tmp_path_factory.mktemp("text") / "sentences.txt"
    sentence_file.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    return synthesize_corpus(
        sentence_file, tmp_path_factory.mktemp("corpus"), SynthConfig(**TINY), progress=False
    )


def test_metadata_header_and_counts(corpus: Path) -> None:
    assert corpus.read_text(encoding="utf-8").splitlines()[0] == ",".join(METADATA_COLUMNS)
    rows = _read(corpus)
    splits = [row["split"] for row in rows]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (7 * 2, 2, 3)
    assert {row["transcript"] for row in rows} == set(SENTENCES)
    assert (corpus.parent / "synth.json").is_file()


def test_wavs_are_16k_mono_int16_with_matching_durations(corpus: Path) -> None:
    for row in _read(corpus):
        info = sf.info(corpus.parent / row["file_path"])
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert float(row["duration"]) == pytest.approx(info.frames / 16000, abs=1e-3)
        assert 0.5 < info.duration < 10


def test_heldout_sentences_and_settings_never_in_train(corpus: Path) -> None:
    rows = _read(corpus)
    train = [row for row in rows if row["split"] == "train"]
    heldout = [row for row in rows if row["split"] != "train"]
    assert not {r["transcript"] for r in heldout} & {r["transcript"] for r in train}
    assert not {r["speaker_id"] for r in heldout} & {r["speaker_id"] for r in train}


def test_train_renditions_are_distinct_and_cover_all_dialects(corpus: Path) -> None:
    train = [row for row in _read(corpus) if row["split"] == "train"]
    for sentence in {r["transcript"] for r in train}:
        assert len({r["speaker_id"] for r in train if r["transcript"] == sentence}) == 2
    assert {r["speaker_id"].split("+")[0] for r in train} == set(SynthConfig().voices)


def test_small_grid_train_keeps_every_component() -> None:
    grid = {"variants": ("m1", "f1"), "speeds": (150, 170), "pitches": (50,), "pitch_ranges": (50,), "word_gaps": (0,)}
    config = SynthConfig(**grid, test_setting_share=0.4)
    train, reserved = _reserve_settings(config)
    assert len(reserved) == 5 and not set(train) & set(reserved)
    assert {s.voice for s in train} == set(config.voices)
    assert {s.variant for s in train} == {"m1", "f1"} and {s.speed for s in train} == {150, 170}


def test_default_grid_reserves_new_combinations_of_values_train_all_has() -> None:
    config = SynthConfig()
    train, reserved = _reserve_settings(config)
    assert not set(train) & set(reserved) and len(reserved) == round(0.2 * (len(train) + len(reserved)))
    names = [name for name, _ in train[0].components()]
    assert len(names) == len(GRID_FIELDS) == 6  # voice, variant, speed, pitch, pitch range, word gap
    for name, field in zip(names, GRID_FIELDS):
        assert {dict(s.components())[name] for s in train} == set(getattr(config, field)), name


def test_audio_never_holds_digital_silence(corpus: Path) -> None:
    """espeak-ng pads with exact zeros, which no microphone records: a noise floor lies under every file."""
    for row in _read(corpus):
        audio, _ = sf.read(corpus.parent / row["file_path"], dtype="int16")
        zero = np.concatenate([[0], (audio == 0).astype(np.int8), [0]])
        runs = np.flatnonzero(np.diff(zero) == -1) - np.flatnonzero(np.diff(zero) == 1)
        assert runs.max(initial=0) < 16, (row["file_path"], runs.max())  # never 1 ms of exact zeros
        assert (audio == 0).mean() < 0.05, row["file_path"]


def test_lead_in_tail_and_noise_floor_are_rendered_as_planned(corpus: Path) -> None:
    jobs = _planned(corpus)
    for row in _read(corpus):
        conditions = jobs[row["file_path"]].conditions
        audio, sr = sf.read(corpus.parent / row["file_path"], dtype="int16")
        # Speech starts where the level first rises 12 dB over the noise floor: soft onsets (s, h) a little after.
        onset = np.flatnonzero(_frame_db(audio) > conditions.noise_floor_db + 12)[0] / 100
        assert conditions.lead_in - 0.01 <= onset <= conditions.lead_in + 0.1, (row["file_path"], onset, conditions)
        assert float(row["duration"]) > conditions.lead_in + conditions.tail
        lead = audio[: int(conditions.lead_in * sr)].astype(np.float64) / 32768
        if len(lead) >= 0.1 * sr:
            floor_db = 10 * np.log10(np.mean(lead**2))
            assert floor_db == pytest.approx(conditions.noise_floor_db, abs=2.0), row["file_path"]


def test_recording_conditions_vary_within_their_ranges() -> None:
    """Some utterances start speaking at once, some after a long wait; levels and noise colours spread out."""
    config = SynthConfig()
    sentences = read_sentences(default_sentences_path())[:1000]
    conditions = [job.conditions for job in _plan(sentences, config)[0]]
    lead_ins = np.array([c.lead_in for c in conditions])
    assert 0.15 < np.mean(lead_ins < 0.05) < 0.35 and np.mean(lead_ins > 0.5) > 0.1
    for name in ("speech_level_db", "noise_floor_db", "noise_slope", "lead_in", "tail"):
        values = np.array([getattr(c, name) for c in conditions])
        low, high = getattr(config, name)
        assert low <= values.min() < low + 0.1 * (high - low) and high - 0.1 * (high - low) < values.max() <= high


@needs_espeak
def test_deterministic_regardless_of_workers(corpus: Path, tmp_path: Path) -> None:
    again = synthesize_corpus(SENTENCES, tmp_path, SynthConfig(**{**TINY, "workers": 1}), progress=False)
    assert again.read_bytes() == corpus.read_bytes()
    for row in _read(again):
        assert (tmp_path / row["file_path"]).read_bytes() == (corpus.parent / row["file_path"]).read_bytes()


def test_read_sentences_tsv_header_and_nfd(tmp_path: Path) -> None:
    path = tmp_path / "s.tsv"
    nfd = unicodedata.normalize("NFD", "Tiếng Việt có dấu.")
    path.write_text(
        f"sentence\tsource\n{nfd}\twiki\n\n  Xin   chào\tx\nTiếng Việt có dấu.\ty\n", encoding="utf-8"
    )
    assert read_sentences(path) == ["Tiếng Việt có dấu.", "Xin chào"]
    assert all(unicodedata.is_normalized("NFC", s) for s in read_sentences(path))


def test_shipped_sentences_are_unique_classic_toned_and_in_the_alphabet() -> None:
    """The demo corpus speaks these: a duplicate would leak between splits, a digit or an unknown letter would be
    read differently by espeak-ng than written, and new-style tone marks would disagree with the labels."""
    lines = default_sentences_path().read_text(encoding="utf-8").splitlines()
    assert lines == read_sentences(default_sentences_path())  # NFC, no blank or repeated lines
    labels = [normalize_text(line, "classic") for line in lines]
    assert len(set(labels)) == len(lines)
    assert not [line for line in lines if re.search(r"\d", line)]
    assert not [label for label in labels if unknown_characters(label)]
    # Classic placement already: normalising changes nothing but case and punctuation.
    plain = [" ".join(re.sub(r"[^\w\s]", " ", line.lower()).split()) for line in lines]
    assert [i for i, (a, b) in enumerate(zip(labels, plain)) if a != b] == []


def test_config_from_dict() -> None:
    config = SynthConfig.from_dict(
        {"speeds": "140, 170", "variants": ["m1", "f2"], "max_sentences": None, "noise_floor_db": "-70,-60"}
    )
    assert config.speeds == (140, 170) and config.variants == ("m1", "f2") and config.max_sentences is None
    assert config.noise_floor_db == (-70.0, -60.0)
    with pytest.raises(ValueError, match="unknown"):
        SynthConfig.from_dict({"sped": 1})


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"lead_in": (0.5, 0.1)}, "lead_in"),
        ({"noise_floor_db": (-60.0, 3.0)}, "noise_floor_db"),
        ({"pitch_ranges": (50, 120)}, "pitch_ranges"),
        ({"word_gaps": ()}, "word_gaps"),
    ],
)
def test_impossible_options_are_refused_by_name(options: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        SynthConfig(**options)


def test_missing_espeak_names_debian_package(tmp_path: Path) -> None:
    with pytest.raises(EspeakNotFoundError, match="apt-get install espeak-ng"):
        synthesize_corpus(SENTENCES, tmp_path, SynthConfig(espeak_binary="no-such-espeak-ng"), progress=False)


@needs_espeak
def test_unknown_variant_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="m99"):
        synthesize_corpus(SENTENCES, tmp_path, SynthConfig(**TINY, variants=("m1", "m99")), progress=False)
