"""The streaming encoder step exported to ONNX (fixed-size cache with a mask) runs as the PyTorch steps do."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_streaming import N_MELS, STREAMING, model_folder, one_thread, tiny_model  # noqa: F401 (one_thread: autouse fixture)

from ai2text_hf.cli import main
from ai2text_hf.export.streaming import export_streaming_onnx, streaming_parity
from ai2text_hf.streaming import StreamingOptions, StreamingRecognizer
from ai2text_hf.streaming.onnx import STEP_NAME

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("quantize", [False, True], ids=["float", "int8"])
def test_onnx_streaming_steps_match_the_pytorch_steps(tmp_path: Path, quantize: bool) -> None:
    model = tiny_model(**STREAMING, interctc_layers=[1])
    path = export_streaming_onnx(model, tmp_path / "step.onnx", chunk_frames=4, left_chunks=2, quantize=quantize)
    features = torch.randn(1, 203, N_MELS)  # 13 steps, the last one short; the cache fills after 2
    parity = streaming_parity(model, path, chunk_frames=4, left_chunks=2, features=features)
    assert parity["frames"] == 51
    if quantize:
        assert parity["argmax_agreement"] >= 0.9 and parity["max_abs_logit_diff"] < 0.5
    else:
        assert parity["max_abs_logit_diff"] < 1e-4 and parity["argmax_agreement"] == 1.0


def test_sessions_on_the_onnx_step_give_the_pytorch_sessions_results(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "model")
    options = StreamingOptions(chunk_ms=160, endpoint_silence_ms=10**6, max_utterance_s=1e6)
    torch_recognizer = StreamingRecognizer(folder, options)
    path = export_streaming_onnx(torch_recognizer.model, tmp_path / "step.onnx", chunk_frames=4, left_chunks=2)
    onnx_recognizer = StreamingRecognizer(folder, dataclasses.replace(options, onnx_step=str(path)))
    wave = np.random.default_rng(4).normal(0, 0.1, 16000 * 2).astype(np.float32)
    results = []
    for recognizer in (torch_recognizer, onnx_recognizer):
        session = recognizer.session()
        events = [e for start in range(0, len(wave), 3000) for e in session.accept_audio(wave[start : start + 3000])]
        results.append([(e.type, e.text) for e in events + session.finish()])
    assert results[0] == results[1] and results[0][-1][0] == "final"
    with pytest.raises(ValueError, match="same chunk_ms and left_chunks"):
        StreamingRecognizer(folder, dataclasses.replace(options, chunk_ms=320, onnx_step=str(path)))


def test_an_export_streams_on_its_own_step_as_the_pytorch_folder_does(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "model")
    output = tmp_path / "onnx"
    assert main(["export", "--model", str(folder), "--output", str(output), "--stream-chunk-ms", "160"]) == 0
    report = json.loads((output / "export_report.json").read_text(encoding="utf-8"))["streaming"]
    assert (report["chunk_ms"], report["left_chunks"]) == (160, 2) and report["parity"]["argmax_agreement"] == 1.0
    options = StreamingOptions(chunk_ms=160, endpoint_silence_ms=10**6, max_utterance_s=1e6)
    exported = StreamingRecognizer(output, options)
    assert exported.onnx_step is not None and not isinstance(exported.model, torch.nn.Module)
    wave = np.random.default_rng(5).normal(0, 0.1, 16000 * 2).astype(np.float32)
    results = []
    for recognizer in (StreamingRecognizer(folder, options), exported):
        session = recognizer.session()
        events = [e for start in range(0, len(wave), 2500) for e in session.accept_audio(wave[start : start + 2500])]
        results.append([(e.type, e.text) for e in events + session.finish()])
    assert results[0] == results[1] and results[0][-1][0] == "final"
    with pytest.raises(ValueError, match="--stream-chunk-ms"):  # an export has no PyTorch steps for other chunks
        StreamingRecognizer(output, dataclasses.replace(options, chunk_ms=320))
    shutil.copy(output / STEP_NAME, folder / STEP_NAME)  # a PyTorch folder runs other chunks on PyTorch
    assert StreamingRecognizer(folder, dataclasses.replace(options, chunk_ms=320)).onnx_step is None
    assert StreamingRecognizer(folder, options).onnx_step is not None
