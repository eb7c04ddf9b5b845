"""ONNX graphs of a trained CTC model (ours or a transformers one): export, offline graph optimisation and int8
dynamic quantization.

Export uses torch's TorchScript-based exporter (``dynamo=False``). The torch.export-based default
needs the extra ``onnxscript`` package and cannot trace the model's data-dependent branch (a padded
batch or not) without rewriting it as ``torch.cond``; tracing records the padded branch, whose masks
are all true for an unpadded batch, so one graph serves every batch and time length.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch

OPSET = 17


class _LogitsOnly(torch.nn.Module):
    """A CTC model taking its inputs by position and returning the logits tensor alone (the exporter needs
    tensors, not keyword arguments and a ModelOutput)."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs))).logits


def export_onnx(model: torch.nn.Module, example: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write ``model`` as an ONNX graph of its forward pass on ``example`` (its keyword arguments: a padded batch of
    two inputs of different lengths, so the padding path is the one recorded), with dynamic batch and time axes.

    Inputs: the model's own (``input_features`` float32 (batch, frames, columns) for ours and w2v-BERT,
    ``input_values`` (batch, samples) for raw-audio models) and, where the family takes one, ``attention_mask``
    (batch, frames or samples); output: ``logits`` (batch, logit_frames, vocab).
    """
    path = Path(path)
    names = list(example)
    wrapper = _LogitsOnly(model, names).cpu().eval()  # eval() on the wrapper: export restores its mode recursively
    with warnings.catch_warnings():
        # Tracer warnings about the padded-batch branch and the exporter's deprecation notice: both expected.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            tuple(tensor.cpu() for tensor in example.values()),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["logits"],
            dynamic_axes={
                **{name: {0: "batch", 1: "frames"} for name in names},
                "logits": {0: "batch", 1: "logit_frames"},
            },
            opset_version=OPSET,
        )
    return path


def optimize_onnx(source: str | Path, target: str | Path) -> Path:
    """onnxruntime's offline graph optimisation (constant folding, redundant-node removal, fusions).

    Level "extended", not "all": the layout optimisations of "all" are specific to the CPU that runs
    them and onnxruntime advises against saving them in a model file.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return Path(target)


def quantize_onnx(source: str | Path, target: str | Path) -> Path:
    """onnxruntime's int8 dynamic quantization of the weight matrices (activations quantized per batch).

    Only products with a constant (weight) operand are quantized: the attention products of two
    activations stay in float, where 8 bits would cost accuracy for little speed. So do the first and
    the last product (the front end's projection and the CTC head, a small share of the multiply-adds):
    quantizing them too changed more transcripts and the WER more (docs/results.md).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            quant_pre_process(str(source), str(prepared))
        except Exception:  # symbolic shape inference cannot follow the wav2vec2 conv-length arithmetic: skip it
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        kept_in_float = [
            node.name
            for node in onnx.load(str(prepared)).graph.node
            if node.op_type in ("MatMul", "Gemm") and ("/subsampling/out/" in node.name or "/lm_head/" in node.name)
        ]
        quantize_dynamic(
            prepared,
            target,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
            nodes_to_exclude=kept_in_float,
            extra_options={"MatMulConstBOnly": True},
        )
    return Path(target)
