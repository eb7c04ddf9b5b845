"""Streaming recognition: chunked encoder with caches, streaming features, sessions, endpointing, CLI.

Tiny random models built on the spot: their text is noise, but a streaming step must reproduce the full forward
pass with the same chunk mask exactly, whatever the weights.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ai2text_hf.cli import main
from ai2text_hf.configuration_ai2text import AI2TextConfig
from ai2text_hf.data.audio import load_audio
from ai2text_hf.decoding.core import utterance_from_path
from ai2text_hf.feature_extraction_ai2text import AI2TextFeatureExtractor
from ai2text_hf.modeling_ai2text import AI2TextForCTC
from ai2text_hf.processing_ai2text import AI2TextProcessor
from ai2text_hf.streaming import StreamingNotSupportedError, StreamingOptions, StreamingRecognizer
from ai2text_hf.streaming.session import _Features
from ai2text_hf.tokenization_ai2text import AI2TextTokenizer

N_MELS = 16
STREAMING = {"causal_conv": True, "causal_subsampling": True, "dynamic_chunk_training": True}


@pytest.fixture(autouse=True)
def one_thread():
    """Streaming steps are small: on a busy machine two threads wait on each other far longer than they compute."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides) -> AI2TextConfig:
    settings = dict(
        vocab_size=12,
        d_model=32,
        num_encoder_layers=3,
        num_heads=2,
        d_ff=64,
        n_mels=N_MELS,
        conv_kernel_size=5,
        subsampling_channels=8,
        attention_left_chunks=2,
    )
    return AI2TextConfig(**{**settings, **overrides})


def tiny_model(**overrides) -> AI2TextForCTC:
    torch.manual_seed(0)
    return AI2TextForCTC(tiny_config(**overrides)).eval()


def model_folder(path: Path, streaming: bool = True, normalize: str = "causal") -> Path:
    tokenizer = AI2TextTokenizer()
    config = tiny_config(
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **(STREAMING if streaming else {})
    )
    torch.manual_seed(0)
    AI2TextForCTC(config).save_pretrained(path)
    extractor = AI2TextFeatureExtractor(feature_size=N_MELS, normalize=normalize, causal_norm_window=1.0)
    AI2TextProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    return path


def swap_head_rows(model: AI2TextForCTC, a: int, b: int) -> None:
    """Make the model say token ``b`` where it said ``a`` and the other way round (its CTC head's rows swapped)."""
    with torch.no_grad():
        for tensor in (model.lm_head.weight, model.lm_head.bias):
            tensor[[a, b]] = tensor[[b, a]]


def stream_logits(model: AI2TextForCTC, features: torch.Tensor, chunk: int, left: int) -> torch.Tensor:
    state = model.streaming_state()
    step = model.config.subsampling_factor * chunk
    pieces = []
    with torch.no_grad():
        for start in range(0, features.shape[1], step):
            logits, *state = model.forward_chunk(features[:, start : start + step], *state, left * chunk)
            pieces.append(logits)
    return torch.cat(pieces, dim=1)


def test_configs_without_streaming_keys_stay_full_context_and_draw_no_randomness() -> None:
    """Checkpoints saved before the streaming keys load with them off; training mode draws no chunk sizes, so the
    random stream (dropout, SpecAugment) and every output are those of before."""
    legacy = {k: v for k, v in tiny_config().to_dict().items() if k not in STREAMING}
    loaded = AI2TextConfig.from_dict(legacy)
    assert not (loaded.causal_conv or loaded.causal_subsampling or loaded.dynamic_chunk_training)
    assert not loaded.streamable
    model = AI2TextForCTC(loaded).train()
    features = torch.randn(2, 90, N_MELS)
    torch.manual_seed(3)
    first = model(features).logits
    after = torch.rand(())
    torch.manual_seed(3)
    second = model(features, chunk_size=None).logits
    assert torch.equal(first, second) and torch.equal(after, torch.rand(()))


def test_default_model_reads_future_frames_and_a_chunked_causal_one_does_not() -> None:
    features = torch.randn(1, 120, N_MELS)
    changed = features.clone()
    changed[:, 64:] = torch.randn(1, 56, N_MELS)  # everything after output frame 16 (chunks of 4 frames: 4 chunks)
    default = tiny_model()
    streaming = tiny_model(**STREAMING)
    with torch.no_grad():
        assert not torch.allclose(default(features).logits[:, :16], default(changed).logits[:, :16])
        before = streaming(features, chunk_size=4).logits[:, :16]
        assert torch.equal(before, streaming(changed, chunk_size=4).logits[:, :16])
        # Full context (the default) still reads the whole utterance, so one model serves both.
        assert not torch.allclose(streaming(features).logits[:, :16], streaming(changed).logits[:, :16])


@pytest.mark.parametrize(
    ("overrides", "chunk", "left"),
    [
        ({}, 4, 2),
        ({}, 1, 0),
        ({"interctc_layers": [1]}, 3, 1),  # self-conditioning runs in every step too
        ({"block_type": "transformer"}, 5, 3),
        ({"num_pitch_features": 3, "subsampling_factor": 8}, 2, 2),
    ],
)
def test_streaming_steps_equal_the_full_forward_with_the_same_chunk_mask(
    overrides: dict, chunk: int, left: int
) -> None:
    model = tiny_model(**STREAMING, **overrides)
    columns = N_MELS + model.config.num_pitch_features
    features = torch.randn(1, 301, columns)  # not a whole number of chunks: the last step is short
    with torch.no_grad():
        full = model(features, chunk_size=chunk, left_chunks=left).logits
    streamed = stream_logits(model, features, chunk, left)
    assert streamed.shape == full.shape
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=1e-5)


def test_padded_batches_with_chunk_masks_match_lone_utterances() -> None:
    """A padded frame whose allowed chunks are all padding must not turn the batch into NaN."""
    model = tiny_model(**STREAMING)
    features = torch.randn(2, 200, N_MELS)
    mask = torch.ones(2, 200, dtype=torch.bool)
    mask[1, 37:] = False
    with torch.no_grad():
        batch = model(features, attention_mask=mask, chunk_size=2, left_chunks=0).logits
        alone = model(features[1:, :37], chunk_size=2, left_chunks=0).logits
    assert not batch.isnan().any()
    torch.testing.assert_close(batch[1, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-5)


def test_streaming_features_equal_the_extractor_on_the_whole_input() -> None:
    extractor = AI2TextFeatureExtractor(feature_size=N_MELS, normalize="causal", causal_norm_window=0.3)
    wave = np.random.default_rng(0).normal(0, 0.1, 16000 * 2 + 123).astype(np.float32)
    offline = extractor(wave, sampling_rate=16000, return_tensors="pt")["input_features"]
    stream = _Features(extractor)
    pieces, position = [], 0
    for size in (7, 399, 1600, 5000, 161, 30000):
        pieces.append(stream.push(wave[position : position + size]))
        position += size
    pieces.append(stream.push(wave[position:], final=True))
    torch.testing.assert_close(torch.cat(pieces, dim=1), offline, atol=1e-5, rtol=1e-5)
    assert stream.history.shape[1] < extractor.causal_norm_frames  # the statistics read a bounded past


def test_causal_normalisation_uses_each_frames_own_window_of_past_frames() -> None:
    extractor = AI2TextFeatureExtractor(feature_size=N_MELS, normalize="causal", causal_norm_window=0.05)  # 5 frames
    frames = torch.randn(1, 12, N_MELS, dtype=torch.float64) * 3 + 5
    windows = [frames[0, max(0, i - 4) : i + 1] for i in range(12)]
    expected = torch.stack(
        [(frames[0, i] - w.mean(0)) / (w.var(0, unbiased=False) + 1e-5).sqrt() for i, w in enumerate(windows)]
    )
    torch.testing.assert_close(extractor.causal_normalize(frames, frames[:, :0])[0], expected)
    torch.testing.assert_close(extractor.causal_normalize(frames[:, 7:], frames[:, 3:7])[0], expected[7:])


def test_session_text_equals_greedy_decoding_of_the_chunked_full_forward(tmp_path: Path) -> None:
    recognizer = StreamingRecognizer(
        model_folder(tmp_path), StreamingOptions(chunk_ms=160, endpoint_silence_ms=10**6, max_utterance_s=1e6)
    )
    wave = np.random.default_rng(1).normal(0, 0.1, 16000 * 3).astype(np.float32)
    features = recognizer.feature_extractor(wave, sampling_rate=16000, return_tensors="pt")["input_features"]
    with torch.no_grad():
        tokens = recognizer.model(features, chunk_size=4, left_chunks=2).logits[0].argmax(-1)
    # The random model's most frequent token becomes the word delimiter, so the noise reads as many words.
    delimiter = recognizer.tokenizer.convert_tokens_to_ids(recognizer.tokenizer.word_delimiter_token)
    swap_head_rows(recognizer.model, int(tokens.mode().values), delimiter)
    session = recognizer.session()
    events = []
    for start in range(0, len(wave), 1111):
        events += session.accept_audio(wave[start : start + 1111])
    events += session.finish()
    with torch.no_grad():
        logits = recognizer.model(features, chunk_size=4, left_chunks=2).logits[0]
    log_probs = logits.log_softmax(-1)
    expected = utterance_from_path(log_probs.argmax(-1), log_probs, recognizer.tokenizer, 0.04)
    finals = [e for e in events if e.type == "final"]
    assert len(expected.words) > 3  # so the words kept from earlier partials are part of the final
    assert [e.text for e in finals] == [expected.text]
    assert finals[0].words == expected.words and finals[0].end == pytest.approx(len(logits) * 0.04)
    for partial in events[:-1]:  # each partial: the path up to its end read at once
        assert partial.type == "partial"
        frames = round(partial.end / 0.04)
        so_far = utterance_from_path(log_probs[:frames].argmax(-1), log_probs[:frames], recognizer.tokenizer, 0.04)
        assert (partial.text, partial.words) == (so_far.text, so_far.words)


def test_cache_sizes_stay_bounded_however_long_the_stream(tmp_path: Path) -> None:
    recognizer = StreamingRecognizer(model_folder(tmp_path), StreamingOptions(chunk_ms=80, max_utterance_s=1.0))
    session = recognizer.session()
    rng = np.random.default_rng(2)
    shapes = []
    for _ in range(25):  # 5 s in 0.2 s blocks; the left context (2 chunks of 80 ms) is full after 0.24 s
        session.accept_audio(rng.normal(0, 0.1, 3200).astype(np.float32))
        shapes.append([tuple(t.shape) for t in session._state])
    left_frames = recognizer.left_chunks * recognizer.chunk_frames
    assert shapes[-1] == shapes[3]  # constant once the left context is full
    assert shapes[-1][1][4] == left_frames  # attention keys/values: the left chunks only
    assert session._features.history.shape[1] < recognizer.feature_extractor.causal_norm_frames
    assert sum(len(p) for p in session._log_probs) <= 1.0 / 0.04 + recognizer.chunk_frames  # decoder: one utterance


def _speech(path: Path, text: str) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", "vi", "-w", str(path), text], check=True, capture_output=True)
    return load_audio(path, 16000)[0]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="speech is synthesised with espeak-ng")
def test_vad_endpointing_splits_two_utterances_separated_by_silence(tmp_path: Path) -> None:
    first = _speech(tmp_path / "a.wav", "xin chào các bạn")
    second = _speech(tmp_path / "b.wav", "hôm nay trời đẹp quá")
    gap = np.zeros(int(1.5 * 16000), dtype=np.float32)
    recognizer = StreamingRecognizer(
        model_folder(tmp_path / "model"), StreamingOptions(chunk_ms=160, vad=True, endpoint_silence_ms=600)
    )
    session = recognizer.session()
    events = []
    audio = np.concatenate([first, gap, second])
    for start in range(0, len(audio), 1600):
        events += session.accept_audio(audio[start : start + 1600])
    events += session.finish()
    finals = [e for e in events if e.type == "final"]
    assert [e.utterance for e in finals] == [0, 1]
    second_start = (len(first) + len(gap)) / 16000
    assert 0.6 < finals[0].end < second_start  # ended in the gap, once 0.6 s of it had passed
    assert finals[1].start >= second_start - 0.2  # the gap's frames are dropped, not a result
    assert finals[1].end == pytest.approx(len(audio) / 16000, abs=0.2)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="speech is synthesised with espeak-ng")
def test_a_run_of_blanks_ends_an_utterance_without_a_vad(tmp_path: Path) -> None:
    recognizer = StreamingRecognizer(
        model_folder(tmp_path / "model"), StreamingOptions(chunk_ms=160, endpoint_silence_ms=600)
    )
    # The random model gives one token on long silence: swap its head's rows so that token is the blank, as a
    # trained model's is.
    silence = np.zeros(3 * 16000, dtype=np.float32)
    features = recognizer.feature_extractor(silence, sampling_rate=16000, return_tensors="pt")["input_features"]
    with torch.no_grad():
        heard = int(recognizer.model(features, chunk_size=4, left_chunks=2).logits[0, -1].argmax())
    swap_head_rows(recognizer.model, heard, recognizer.tokenizer.pad_token_id)
    first = _speech(tmp_path / "a.wav", "xin chào các bạn")
    second = _speech(tmp_path / "b.wav", "hôm nay trời đẹp quá")
    audio = np.concatenate([silence, first, silence, second])
    session = recognizer.session()
    events = []
    for start in range(0, len(audio), 1600):
        events += session.accept_audio(audio[start : start + 1600])
    events += session.finish()
    finals = [e for e in events if e.type == "final"]
    assert [e.utterance for e in finals] == [0, 1]
    gap_start, gap_end = (len(silence) + len(first)) / 16000, (2 * len(silence) + len(first)) / 16000
    assert gap_start + 0.6 <= finals[0].end < gap_end  # ended in the gap once 0.6 s of blanks had passed
    assert finals[1].start >= finals[0].end and finals[1].end == pytest.approx(len(audio) / 16000, abs=0.2)


def test_a_model_trained_without_chunks_is_refused_with_the_recipe_to_use(tmp_path: Path) -> None:
    with pytest.raises(StreamingNotSupportedError, match="recipes/streaming-cpu.yaml"):
        StreamingRecognizer(model_folder(tmp_path / "full", streaming=False))
    with pytest.raises(StreamingNotSupportedError, match="per-utterance normalisation"):
        StreamingRecognizer(model_folder(tmp_path / "norm", normalize="utterance"))


def test_cli_stream_prints_finals_of_an_audio_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = model_folder(tmp_path / "model")
    audio = tmp_path / "noise.wav"
    sf.write(audio, np.random.default_rng(3).normal(0, 0.1, 16000 * 2).astype(np.float32), 16000)
    assert main(["transcribe", "--model", str(folder), "--stream", "--chunk-ms", "160", "--json", str(audio)]) == 0
    out, err = capsys.readouterr()
    finals = [json.loads(line) for line in out.splitlines()]
    assert finals and all(f["type"] == "final" and f["file"] == str(audio) for f in finals)
    assert "compute RTF" in err
    assert main(["transcribe", "--model", str(folder), "--chunk-ms", "160", str(audio)]) == 2
    assert "--chunk-ms only apply with --stream" in capsys.readouterr().err
