"""An exported ``model.onnx`` run by onnxruntime behind the interface of the PyTorch CTC model it came from.

``ai2text export`` writes a folder with ``model.onnx`` next to the config, tokenizer and feature-extractor
files. :class:`OnnxCTCModel` takes the calls the Transcriber (and so ``transcribe``, ``evaluate``,
``doctor`` and the server) makes of a PyTorch model, so an exported folder works wherever a model
folder does. onnxruntime is an optional dependency (the ``export`` extra), imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCTC
from transformers.modeling_outputs import CausalLMOutput

from .configuration_ai2text import AI2TextConfig
from .modeling_ai2text import AI2TextForCTC

if TYPE_CHECKING:
    import onnxruntime

ONNX_NAME = "model.onnx"
# onnxruntime's input types -> the numpy types fed to them (masks are bool for ours, int64 for transformers').
ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(bool)": np.bool_,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


def session_options() -> onnxruntime.SessionOptions:
    """onnxruntime session options under torch's thread budget, without spin-waiting between runs.

    onnxruntime does not read ``OMP_NUM_THREADS``; it gets torch's thread count so both backends run
    under the same thread budget. Its threads do not spin-wait for work after a run: between runs torch
    computes the next batch's features on the same cores, and spinning threads slowed that (and so the
    whole transcription at 2 threads, batch 8; docs/results.md).
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxCTCModel:
    """``model.onnx`` on onnxruntime's CPU provider, called like the CTC model it was exported from (ours or any
    transformers ``AutoModelForCTC``) in evaluation mode."""

    def __init__(self, model_dir: str | Path):
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(
                f"{model_dir} holds an ONNX export; running it needs onnxruntime: pip install 'ai2text-hf[export]'"
            ) from error
        model_dir = Path(model_dir)
        self.config = AutoConfig.from_pretrained(str(model_dir))
        self.session = onnxruntime.InferenceSession(
            str(model_dir / ONNX_NAME), session_options(), providers=["CPUExecutionProvider"]
        )
        self.input_types = {i.name: ONNX_TYPES[i.type] for i in self.session.get_inputs()}
        # The exported class's own length arithmetic, from a weightless instance (no memory, no weights read).
        with torch.device("meta"):
            if isinstance(self.config, AI2TextConfig):
                self._lengths_model = AI2TextForCTC(self.config)
            else:
                self._lengths_model = AutoModelForCTC.from_config(self.config)

    def __call__(self, **inputs: torch.Tensor) -> CausalLMOutput:
        feeds = {
            name: inputs[name].detach().cpu().numpy().astype(dtype)
            for name, dtype in self.input_types.items()
            if name in inputs
        }
        (logits,) = self.session.run(["logits"], feeds)
        return CausalLMOutput(logits=torch.from_numpy(logits))

    def _get_feat_extract_output_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        """Logit frames produced for ``input_lengths`` input frames or samples (as the exported model's method)."""
        return self._lengths_model._get_feat_extract_output_lengths(input_lengths.cpu())
