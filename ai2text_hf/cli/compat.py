"""Flags kept only so older commands (the old system's guide, earlier scripts) still run, gathered in one place.

Each either renames a current option or changes nothing and says so; no new behaviour hangs on them.
"""

from __future__ import annotations

import argparse
import os
import sys

GROUP_TITLE = "compatibility (older spellings, kept so existing commands still run)"


def add_recipe_compat(p: argparse.ArgumentParser, *, multi_gpu: bool = False) -> None:
    """``--config`` (another name for ``--recipe``) and, for ``train``, ``--multi_gpu``."""
    group = p.add_argument_group(GROUP_TITLE)
    group.add_argument("--config", dest="recipe", help="The old system's name for --recipe.")
    if multi_gpu:
        group.add_argument(
            "--multi_gpu",
            "--multi-gpu",
            action="store_true",
            help="Several GPUs take a launcher: `accelerate launch --config_file "
            "accelerate_configs/multi-gpu.yaml scripts/train.py ...` or `torchrun --nproc_per_node N "
            "scripts/train.py ...`; alone it only prints this and trains with the processes it has.",
        )


def add_export_compat(p: argparse.ArgumentParser) -> None:
    """``--onnx``: ONNX is the only export format, so the flag changes nothing."""
    group = p.add_argument_group(GROUP_TITLE)
    group.add_argument("--onnx", action="store_true", help="Export to ONNX: the only format, so also the default.")


def explain_multi_gpu(args: argparse.Namespace) -> None:
    """Say how several GPUs are used when ``--multi_gpu`` is given; training goes on with the processes it has."""
    if getattr(args, "multi_gpu", False):
        print(
            "--multi_gpu: training on several GPUs takes a launcher, e.g. `accelerate launch --config_file "
            "accelerate_configs/multi-gpu.yaml scripts/train.py ...` or `torchrun --nproc_per_node N "
            f"scripts/train.py ...`. Continuing with {os.environ.get('WORLD_SIZE', 1)} process(es).",
            file=sys.stderr,
        )
