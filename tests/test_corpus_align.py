"""Forced alignment (``ai2text align``): written-word mapping, timings, what is reported, output formats.

The aligner runs on emissions written frame by frame here (a model that "says" known words at known frames),
so the expected timings are exact; the model folder is a tiny random one that supplies the vocabulary,
frame rate and feature extractor (its own emissions serve only the error paths).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torchaudio.functional import merge_tokens

from ai2text_hf import AI2TextConfig, AI2TextFeatureExtractor, AI2TextForCTC, AI2TextProcessor, AI2TextTokenizer
from ai2text_hf.corpus.align import (
    Aligner,
    AlignItem,
    Alignment,
    WordTiming,
    _token_spans,
    monotone_matches,
    render,
)
from ai2text_hf.corpus.formats import Timed, cues, to_srt, to_textgrid, to_vtt
from ai2text_hf.corpus.options import AlignOptions
from ai2text_hf.corpus.text import prepare_text
from ai2text_hf.inference import Transcriber

SR = 16000


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "model"
    torch.manual_seed(0)
    config = AI2TextConfig(d_model=32, num_encoder_layers=1, num_heads=2, d_ff=64, subsampling_channels=8)
    AI2TextForCTC(config).save_pretrained(folder)
    AI2TextProcessor(feature_extractor=AI2TextFeatureExtractor(), tokenizer=AI2TextTokenizer()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def aligner(tiny_model: Path) -> Aligner:
    return Aligner(Transcriber(tiny_model, device="cpu"), AlignOptions(snap_seconds=0))


def speak(aligner: Aligner, words: list[tuple[str, int]], frames: int) -> torch.Tensor:
    """Log-probabilities where each word's characters take one frame each from its start frame, a word
    delimiter follows each word, and every other frame is blank (probability 0.9 on the spoken label)."""
    vocab = aligner.tokenizer.get_vocab()
    path = np.full(frames, aligner.blank)
    for word, start in words:
        for offset, char in enumerate(word):
            path[start + offset] = vocab[char]
        path[start + len(word)] = aligner.delimiter
    probabilities = torch.full((frames, len(vocab)), 0.1 / (len(vocab) - 1))
    probabilities[torch.arange(frames), torch.as_tensor(path)] = 0.9
    return probabilities.log()


def test_written_words_keep_numbers_punctuation_and_case_over_normalised_words():
    text = prepare_text("Năm 2024, giá 1.000 đồng — rẻ!")
    assert [w.text for w in text.written] == ["Năm", "2024,", "giá", "1.000", "đồng —", "rẻ!"]
    spans = {w.text: text.words[w.first : w.last] for w in text.written}
    assert spans["2024,"] == "hai nghìn không trăm hai mươi tư".split()
    assert spans["1.000"] == ["một", "nghìn"]
    assert spans["rẻ!"] == ["rẻ"]


def test_word_times_come_from_the_frames_the_words_are_spoken_in(aligner: Aligner):
    fps = 1 / aligner.frame_seconds
    emission = speak(aligner, [("một", 10), ("nghìn", 20), ("người", 40)], 60)
    result = aligner.align_emission(emission, "1.000 Người!")
    assert result.error is None and result.unaligned == []
    assert [w.text for w in result.words] == ["1.000", "Người!"]
    assert [round(w.start * fps) for w in result.words] == [10, 40]
    assert [round(w.end * fps) for w in result.words] == [25, 45]  # "nghìn" ends at frame 20 + 5
    assert all(w.score > 0.8 for w in result.words)
    assert "".join(c.char for c in result.chars) == "mộtnghìnngười"


def test_text_the_audio_does_not_hold_is_reported_and_not_forced_onto_it(aligner: Aligner):
    spoken = [("anh", 5), ("trai", 12), ("tôi", 20), ("làm", 28), ("kỹ", 36), ("sư", 42)]
    emission = speak(aligner, spoken, 70)
    result = aligner.align_emission(emission, "anh trai tôi làm kỹ sư một con mèo đen nằm trên mái nhà")
    timed = {w.text: round(w.start / aligner.frame_seconds) for w in result.words if w.aligned}
    assert timed == {word: start for word, start in spoken}
    (span,) = result.unaligned
    assert span.text == "một con mèo đen nằm trên mái nhà"
    assert "hears nothing" in span.reason


def test_characters_the_model_cannot_emit_are_named_before_aligning(aligner: Aligner):
    result = aligner.align_emission(speak(aligner, [("anh", 5)], 20), "anh ☃ 你")
    assert result.words == [] and "'☃'" in result.error and "'你'" in result.error


def test_audio_shorter_than_its_transcript_can_fit_is_reported(aligner: Aligner):
    result = aligner.align_emission(speak(aligner, [("anh", 1)], 6), "anh trai tôi làm kỹ sư")
    assert "too short" in result.error and result.words == []


def test_bad_inputs_get_one_line_each_and_the_rest_is_aligned(aligner: Aligner, tmp_path: Path):
    wav = tmp_path / "speech.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32), SR)
    (tmp_path / "broken.wav").write_bytes(b"not audio")
    items = [
        AlignItem("missing", "xin chào", path=tmp_path / "nowhere.wav"),
        AlignItem("empty", "  ", path=wav),
        AlignItem("broken", "xin chào", path=tmp_path / "broken.wav"),
        AlignItem("good", "xin chào", path=wav),
    ]
    results = {r.name: r for r in aligner.align(items)}
    assert "nowhere.wav" in results["missing"].error
    assert "empty transcript" in results["empty"].error
    assert results["broken"].error
    assert results["good"].error is None and len(results["good"].words) == 2


def test_a_twenty_minute_input_is_aligned_in_bounded_pieces(aligner: Aligner):
    rng = np.random.default_rng(0)
    vocabulary = ["anh", "trai", "tôi", "làm", "kỹ", "sư", "một", "công", "ty", "nhà", "mèo", "đen"]
    words, frame = [], 5
    while frame < 20 * 60 * 25 - 20:  # 20 minutes at 25 frames per second
        word = str(rng.choice(vocabulary))
        words.append((word, frame))
        frame += len(word) + 1 + int(rng.integers(1, 6))
    emission = speak(aligner, words, frame + 5)
    pieces = aligner._pieces(emission, [w for w, _ in words])
    assert len(pieces) > 10
    assert max(p.frame1 - p.frame0 for p in pieces) * aligner.frame_seconds <= 1.5 * aligner.options.chunk_seconds
    result = aligner.align_emission(emission, " ".join(w for w, _ in words))
    starts = [round(w.start / aligner.frame_seconds) for w in result.words]
    assert starts == [start for _, start in words]


def test_word_edges_snap_to_where_the_sound_starts_and_stops_but_not_into_the_next_word(aligner: Aligner):
    rng = np.random.default_rng(0)
    wave = 1e-3 * rng.standard_normal(4 * SR)
    for start, end in ((0.5, 1.2), (1.25, 2.0)):  # two words' sound, 50 ms apart
        wave[round(start * SR) : round(end * SR)] = 0.3 * rng.standard_normal(round((end - start) * SR))
    words = [WordTiming("anh", "anh", 0.7, 1.0, 0.9), WordTiming("trai", "trai", 1.4, 1.8, 0.9)]
    snapped = Aligner(aligner.transcriber).snap(Alignment("x", 4.0, "anh trai", words=words), wave.astype(np.float32))
    assert [(w.start, w.end) for w in snapped.words] == [(0.5, 1.2), (1.25, 2.0)]


def test_character_spans_and_scores_are_those_of_torchaudio_merge_tokens():
    path = torch.tensor([0, 5, 5, 0, 0, 7, 0, 7, 7, 9, 0])
    probs = torch.linspace(0.1, 0.9, len(path))
    expected = [(s.token, s.start, s.end, s.score) for s in merge_tokens(path, probs, blank=0)]
    assert [t[:3] for t in _token_spans(path, probs, blank=0)] == [t[:3] for t in expected]
    assert np.allclose([t[3] for t in _token_spans(path, probs, blank=0)], [t[3] for t in expected])


def test_a_repeated_passage_is_matched_with_its_own_repetition():
    """An hour made of one passage four times over: every word the model heard (one in ten misheard) pairs with
    the same repetition of the text, not an earlier or later one."""
    rng = np.random.default_rng(0)
    passage = [f"w{i}" for i in rng.integers(0, 300, size=700)]
    text = passage * 4
    heard = [word if rng.random() > 0.1 else "x" for word in text]
    matches = monotone_matches(text, heard, min_size=3)
    assert sum(m.size for m in matches) > 0.6 * len(text)
    assert all(m.a == m.b for m in matches)


def test_subtitle_cues_break_at_pauses_and_length():
    words = [Timed("xin", 0.0, 0.3), Timed("chào", 0.35, 0.7), Timed("bạn", 2.0, 2.4)]
    assert [c.text for c in cues(words)] == ["xin chào", "bạn"]
    srt = to_srt(words)
    assert srt.startswith("1\n00:00:00,000 --> 00:00:00,700\nxin chào\n")
    assert "2\n00:00:02,000 --> 00:00:02,400\nbạn" in srt
    assert to_vtt(words).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.700\nxin chào\n")
    long = [Timed("chữ", i * 0.5, i * 0.5 + 0.4) for i in range(30)]
    assert all(len(c.text) <= 42 for c in cues(long))


def test_textgrid_tiers_tile_the_file_with_empty_intervals_between_words():
    grid = to_textgrid({"words": [Timed("xin", 0.5, 0.8), Timed("chào", 0.9, 1.2)]}, 2.0)
    assert "intervals: size = 5" in grid
    assert grid.count('text = ""') == 3 and 'text = "chào"' in grid
    assert "xmax = 2.0" in grid


def test_every_format_renders_the_written_words(aligner: Aligner):
    result = aligner.align_emission(speak(aligner, [("một", 10), ("nghìn", 20), ("người", 40)], 60), "1.000 Người!")
    for fmt in ("json", "srt", "vtt", "textgrid", "csv"):
        assert "Người!" in render(result, fmt)
    assert render(result, "csv").splitlines()[1].startswith("1.000,một nghìn,0.4,")


def test_align_command_writes_one_file_per_input_and_format_and_a_report(tiny_model: Path, tmp_path: Path):
    from ai2text_hf.cli import main

    sf.write(tmp_path / "a.wav", (0.1 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32), SR)
    (tmp_path / "metadata.csv").write_text(
        "file_path,transcript\na.wav,xin chào\nmissing.wav,xin chào\n", encoding="utf-8"
    )
    out = tmp_path / "out"
    command = ["align", "--csv", str(tmp_path / "metadata.csv"), "--model", str(tiny_model), "--output", str(out)]
    assert main([*command, "--format", "json", "textgrid"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.TextGrid", "a.json", "report.csv"]
    report = (out / "report.csv").read_text(encoding="utf-8").splitlines()
    assert report[2].startswith("missing,") and "not found" in report[2]


def test_transcribe_writes_subtitles_and_never_overwrites_them(tiny_model: Path, tmp_path: Path, capsys):
    from ai2text_hf.cli import main

    sf.write(tmp_path / "a.wav", (0.1 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32), SR)
    assert main(["transcribe", str(tmp_path / "a.wav"), "--model", str(tiny_model), "--format", "vtt"]) == 0
    assert capsys.readouterr().out.startswith("WEBVTT\n")
    command = ["transcribe", str(tmp_path / "a.wav"), "--model", str(tiny_model), "--format", "srt"]
    assert main([*command, "--output-dir", str(tmp_path / "subs")]) == 0
    assert (tmp_path / "subs" / "a.srt").is_file()
    assert main([*command, "--output-dir", str(tmp_path / "subs")]) == 2
