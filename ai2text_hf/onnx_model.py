"""An exported ``model.onnx`` run by onnxruntime behind the interface of :class:`AI2TextForCTC`.

``ai2text export`` writes a folder with ``model.onnx`` next to the config, tokenizer and feature-extractor
files. :class:`OnnxCTCModel` takes the calls the Transcriber (and so ``transcribe``, ``evaluate``,
``doctor`` and the server) makes of a PyTorch model, so an exported folder works wherever a model
folder does. onnxruntime is an optional dependency (the ``export`` extra), imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers.modeling_outputs import CausalLMOutput

from .configuration_ai2text import AI2TextConfig
from .modeling_ai2text import AI2TextForCTC, _conv_out_lengths

if TYPE_CHECKING:
    import onnxruntime

ONNX_NAME = "model.onnx"
ONNX_INPUTS = ("input_features", "attention_mask")


def session_options() -> onnxruntime.SessionOptions:
    """onnxruntime session options under torch's thread budget, without spin-waiting between runs.

    onnxruntime does not read ``OMP_NUM_THREADS``; it gets torch's thread count so both backends run
    under the same thread budget. Its threads do not spin-wait for work after a run: between runs torch
    computes the next batch's features on the same cores, and spinning threads slowed that (and so the
    whole transcription at 2 threads, batch 8) by a quarter.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxCTCModel:
    """``model.onnx`` on onnxruntime's CPU provider, called like ``AI2TextForCTC`` in evaluation mode."""

    def __init__(self, model_dir: str | Path):
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(
                f"{model_dir} holds an ONNX export; running it needs onnxruntime: pip install 'ai2text-hf[export]'"
            ) from error
        model_dir = Path(model_dir)
        self.config = AI2TextConfig.from_pretrained(str(model_dir))
        self.session = onnxruntime.InferenceSession(
            str(model_dir / ONNX_NAME), session_options(), providers=["CPUExecutionProvider"]
        )
        self.num_convs = self.config.subsampling_factor.bit_length() - 1  # one stride-2 conv per halving

    def __call__(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> CausalLMOutput:
        inputs = {"input_features": input_features, "attention_mask": attention_mask.bool()}
        (logits,) = self.session.run(["logits"], {k: v.detach().cpu().numpy() for k, v in inputs.items()})
        return CausalLMOutput(logits=torch.from_numpy(logits))

    def _get_feat_extract_output_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        """Logit frames produced for ``input_lengths`` feature frames (as ``AI2TextForCTC``'s method)."""
        return _conv_out_lengths(input_lengths, self.num_convs)


def load_ctc_model(model_dir: str | Path, device: torch.device) -> AI2TextForCTC | OnnxCTCModel:
    """The folder's ONNX export when it has one (always on the CPU), else its PyTorch weights on ``device``."""
    model_dir = Path(model_dir)
    if (model_dir / ONNX_NAME).is_file():
        return OnnxCTCModel(model_dir)
    return AI2TextForCTC.from_pretrained(str(model_dir)).to(device).eval()
