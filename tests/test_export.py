"""ONNX export of the fixture model: parity with PyTorch, dynamic axes, int8 quantization, CLI use of the folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from ai2text_hf import AI2TextForCTC
from ai2text_hf.cli import main
from ai2text_hf.export import export_model
from ai2text_hf.onnx_model import OnnxCTCModel

PARITY_UTTERANCES = 12


@pytest.fixture(scope="module")
def onnx_export(trained_model, tmp_path_factory) -> dict:
    """fp32 ONNX export of the fixture model, parity checked on the test split."""
    output = tmp_path_factory.mktemp("export") / "onnx"
    result = export_model(
        trained_model.model_dir, output, dataset=trained_model.dataset_dir, split="test", limit=PARITY_UTTERANCES
    )
    return {"dir": output, "report": result.report}


@pytest.fixture(scope="module")
def int8_export(trained_model, tmp_path_factory) -> dict:
    output = tmp_path_factory.mktemp("export") / "int8"
    result = export_model(
        trained_model.model_dir,
        output,
        quantize="int8",
        optimize=True,
        dataset=trained_model.dataset_dir,
        split="test",
        limit=PARITY_UTTERANCES,
    )
    return {"dir": output, "report": result.report}


def test_onnx_export_gives_pytorch_logits_and_identical_greedy_transcripts(onnx_export) -> None:
    report = onnx_export["report"]
    parity = report["parity"]
    assert parity["utterances"] == PARITY_UTTERANCES
    assert parity["max_abs_logit_diff"] < 1e-3
    assert parity["all_transcripts_identical"], parity
    assert parity["wer_delta"] == 0 and parity["cer_delta"] == 0
    assert json.loads((onnx_export["dir"] / "export_report.json").read_text()) == report


def test_onnx_graph_takes_any_batch_size_and_length(onnx_export, trained_model) -> None:
    """Batch sizes and lengths other than the traced ones, padded and unpadded, match PyTorch."""
    onnx_model = OnnxCTCModel(onnx_export["dir"])
    torch_model = AI2TextForCTC.from_pretrained(str(trained_model.model_dir)).eval()
    generator = torch.Generator().manual_seed(0)
    for lengths in ([901], [57, 310, 123], [64, 64]):
        columns = torch_model.config.n_mels + torch_model.config.num_pitch_features
        features = torch.randn(len(lengths), max(lengths), columns, generator=generator)
        mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
        with torch.no_grad():
            expected = torch_model(input_features=features, attention_mask=mask).logits
        got = onnx_model(input_features=features, attention_mask=mask).logits
        assert got.shape == expected.shape
        out_lengths = onnx_model._get_feat_extract_output_lengths(torch.tensor(lengths))
        torch.testing.assert_close(out_lengths, torch_model._get_feat_extract_output_lengths(torch.tensor(lengths)))
        valid = torch.arange(got.shape[1])[None, :] < out_lengths[:, None]
        np.testing.assert_allclose(got[valid].numpy(), expected[valid].numpy(), atol=1e-3, rtol=0)


def test_transcribe_runs_the_exported_folder_like_the_model(onnx_export, trained_model, capsys) -> None:
    names = {p.name for p in onnx_export["dir"].iterdir()}
    assert {"model.onnx", "config.json", "vocab.json", "tokenizer_config.json", "processor_config.json"} <= names
    assert not any(name.endswith(".safetensors") for name in names)
    wavs = [str(trained_model.corpus_dir / row["file_path"]) for row in trained_model.rows("test")[:3]]
    assert main(["transcribe", "--model", str(trained_model.model_dir), *wavs]) == 0
    from_pytorch = capsys.readouterr().out
    assert main(["transcribe", "--model", str(onnx_export["dir"]), *wavs]) == 0
    assert capsys.readouterr().out == from_pytorch


def test_int8_export_is_smaller_and_reports_size_speed_and_error_rate_deltas(int8_export) -> None:
    report = int8_export["report"]
    assert report["quantize"] == "int8" and report["optimize"] is True
    assert report["onnx_bytes"] < 0.6 * report["pytorch_bytes"]
    parity = report["parity"]
    for key in ("max_abs_logit_diff", "pytorch_seconds", "exported_seconds", "speedup", "wer_delta", "cer_delta"):
        assert key in parity, key
    assert parity["max_abs_logit_diff"] > 0  # quantized: not the same numbers...
    assert abs(parity["cer_delta"]) < 0.02  # ...but nearly the same text (within 2 CER points)


def test_int8_export_keeps_the_front_end_projection_and_ctc_head_in_float(int8_export) -> None:
    import onnx

    nodes = onnx.load(str(int8_export["dir"] / "model.onnx")).graph.node
    float_products = {node.name for node in nodes if node.op_type in ("MatMul", "Gemm")}
    assert any("/lm_head/" in name for name in float_products), sorted(float_products)
    assert any("/subsampling/out/" in name for name in float_products), sorted(float_products)
    assert sum(node.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for node in nodes) > 10  # the blocks


def test_export_cli_prints_parity_and_refuses_to_overwrite_a_model_folder(trained_model, tmp_path, capsys) -> None:
    output = tmp_path / "onnx"
    assert main(["export", "--model", str(trained_model.model_dir), "--output", str(output), "--onnx"]) == 0
    printed = capsys.readouterr().out
    assert "max |logit difference|" in printed and "identical greedy texts   8/8" in printed
    model_copy = tmp_path / "model"
    shutil.copytree(trained_model.model_dir, model_copy)
    assert main(["export", "--model", str(trained_model.model_dir), "--output", str(model_copy)]) == 2
    assert "not an export" in capsys.readouterr().err
    assert main(["export", "--model", str(output), "--output", str(tmp_path / "again")]) == 2
    assert "already an ONNX export" in capsys.readouterr().err


def test_export_refuses_a_dataset_with_other_features_like_evaluate(trained_model, tmp_path) -> None:
    """Parity data goes through the one scoring loader: stored features of other settings are refused."""
    dataset = tmp_path / "dataset"
    shutil.copytree(trained_model.dataset_dir, dataset)
    manifest = json.loads((dataset / "manifest.json").read_text())
    manifest["feature_extractor"]["hop_length"] += 1
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"computed with other settings than the model uses \(hop_length"):
        export_model(trained_model.model_dir, tmp_path / "onnx", dataset=dataset, split="test", limit=2)
