"""Importing the package: cheap (no torch), and the Auto classes still find the model once they are used."""

from __future__ import annotations

import subprocess
import sys

import ai2text_hf


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_import_loads_neither_torch_nor_transformers() -> None:
    out = _run("import sys, ai2text_hf, ai2text_hf.cli; print(sorted({'torch', 'transformers'} & set(sys.modules)))")
    assert out.strip() == "[]"


def test_auto_classes_find_the_model_after_a_plain_import(tmp_path) -> None:
    """``import ai2text_hf`` first, transformers' Auto classes later (the registration waits for them)."""
    out = _run(
        "import ai2text_hf\n"
        "from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForCTC\n"
        "config = AutoConfig.for_model('ai2text_ctc', d_model=32, num_encoder_layers=1, num_heads=2, d_ff=64)\n"
        "model = AutoModelForCTC.from_config(config)\n"
        f"model.save_pretrained({str(tmp_path)!r})\n"
        f"print(type(AutoModelForCTC.from_pretrained({str(tmp_path)!r})).__name__, model.config.auto_map)\n"
    )
    assert out.startswith("AI2TextForCTC") and "modeling_ai2text.AI2TextForCTC" in out


def test_classes_load_on_first_use() -> None:
    out = _run(
        "import sys, ai2text_hf\n"
        "from ai2text_hf import AI2TextConfig, AI2TextForCTC\n"
        "from transformers.models.auto.modeling_auto import MODEL_FOR_CTC_MAPPING\n"
        "print(MODEL_FOR_CTC_MAPPING[AI2TextConfig] is AI2TextForCTC, AI2TextForCTC._auto_class)\n"
    )
    assert out.strip() == "True AutoModelForCTC"


def test_front_door_names_resolve_on_first_use_only() -> None:
    """Every public name resolves to the object its module defines, and none is imported before it is asked for."""
    out = _run(
        "import importlib, sys, ai2text_hf\n"
        "loaded = {m for m in sys.modules if m.startswith('ai2text_hf.')}\n"
        "eager = sorted(loaded - {'ai2text_hf.auto_registration', 'ai2text_hf.lazy_exports'})\n"
        "wrong = [n for n, m in ai2text_hf._EXPORTS.items()\n"
        "         if getattr(ai2text_hf, n) is not getattr(importlib.import_module('ai2text_hf.' + m), n)]\n"
        "print(eager, wrong, sorted(set(ai2text_hf._EXPORTS) - set(ai2text_hf.__all__)))\n"
    )
    assert out.strip() == "[] [] []"


def test_front_door_offers_what_a_python_user_calls() -> None:
    expected = {"Transcriber", "DecodingOptions", "asr_pipeline", "prepare_dataset", "load_recipe", "train"}
    assert expected <= set(ai2text_hf.__all__)
