"""A Python environment without ai2text-hf, for checking what a model folder does on its own (remote code).

``python -m venv --system-site-packages`` or a venv pointing at this one's site-packages would still see the
editable ai2text-hf install and every other package here. Instead, a ``--without-pip`` venv gets symlinks to the
installed files of exactly the distributions named (transformers, torch, torchaudio, soundfile and the remote
code's declared dependency flashlight-text) and of what they require, resolved from their metadata; its
interpreter runs with ``-I`` (no PYTHONPATH, no user site, no working directory on sys.path), so ai2text_hf
cannot be imported and a missing dependency of the remote code fails as it would for a user.
"""

from __future__ import annotations

import importlib.metadata as metadata
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

# What the issue allows a user to have, plus the remote code's declared decoder dependency.
ALLOWED = ("transformers", "torch", "torchaudio", "soundfile", "flashlight-text")


def _closure(names: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions ``names`` and, transitively, their unconditional requirements."""
    seen: dict[str, metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = pending.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional runtime dependency that is not installed here either
        seen[key] = dist
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return list(seen.values())


def make_clean_python(root: Path, names: tuple[str, ...] = ALLOWED) -> list[str]:
    """Create the environment in ``root``; the command (interpreter and flags) to run Python in it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next(root.glob("lib/python*/site-packages"))
    for dist in _closure(names):
        if dist.metadata["Name"].lower().replace("_", "-") == "ai2text-hf":
            raise AssertionError("ai2text-hf must not be among the clean environment's packages")
        installed = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            if (installed / top).exists() and not (site / top).exists():
                (site / top).symlink_to(installed / top)
    return [str(root / "bin" / "python"), "-I"]
