"""KenLM's binary format for a model folder's language model: loads in milliseconds where an ARPA file is parsed.

The decoder (the KenLM query code inside flashlight-text) reads KenLM binaries, but nothing on PyPI or in Debian
writes them: KenLM's ``build_binary`` exists only as C++ source (the ``kenlm`` sdist on PyPI). So
:func:`install_build_binary` compiles that one tool from the sdist with the system's C++ compiler (no Boost, no
CMake: the query-only build KenLM documents in ``compile_query_only.sh``), once, into a cache folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..language_model_ai2text import BINARY_NAME, WORDS_NAME, arpa_vocabulary

TOOL_ENV = "AI2TEXT_BUILD_BINARY"  # path of a build_binary to use instead of searching
KENLM_SDIST = "kenlm==0.3.0"
_CXXFLAGS = ["-O2", "-DNDEBUG", "-DKENLM_MAX_ORDER=6", "-w"]


def default_tool_path() -> Path:
    """Where :func:`install_build_binary` puts the tool unless told otherwise."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ai2text-hf" / "kenlm" / "build_binary"


def find_build_binary() -> Path | None:
    """KenLM's ``build_binary``: ``$AI2TEXT_BUILD_BINARY``, else on PATH, else the default install path."""
    for candidate in (os.environ.get(TOOL_ENV), shutil.which("build_binary"), default_tool_path()):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def install_build_binary(target: str | Path | None = None, jobs: int | None = None) -> Path:
    """Compile KenLM's ``build_binary`` from the ``kenlm`` sdist (fetched with pip) into ``target``."""
    target = Path(target) if target else default_tool_path()
    compiler = os.environ.get("CXX", "g++")
    if not shutil.which(compiler):
        raise RuntimeError(f"Building KenLM's build_binary needs a C++ compiler ({compiler}): apt-get install g++")
    with tempfile.TemporaryDirectory() as tmp:
        download = [sys.executable, "-m", "pip", "download", KENLM_SDIST, "--no-binary", ":all:", "--no-deps"]
        result = subprocess.run([*download, "--no-build-isolation", "-d", tmp], capture_output=True, text=True)
        archives = list(Path(tmp).glob("kenlm-*.tar.gz"))
        if result.returncode or not archives:
            raise RuntimeError(f"pip could not fetch the {KENLM_SDIST} source:\n{result.stderr[-2000:]}")
        with tarfile.open(archives[0]) as archive:
            archive.extractall(tmp, filter="data")
        root = next(Path(tmp).glob("kenlm-*/lm")).parent
        sources = [
            path
            for folder in ("util", "util/double-conversion", "lm")
            for path in sorted((root / folder).glob("*.cc"))
            if not path.name.endswith(("test.cc", "main.cc"))
        ]

        def compile_one(source: Path) -> Path:
            output = source.with_suffix(".o")
            command = [compiler, "-I", str(root), *_CXXFLAGS, "-c", str(source), "-o", str(output)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"Compiling KenLM's {source.relative_to(root)} failed:\n{done.stderr[-2000:]}")
            return output

        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
            objects = list(pool.map(compile_one, sources))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        link = [compiler, "-I", str(root), *_CXXFLAGS, str(root / "lm" / "build_binary_main.cc"), *map(str, objects)]
        done = subprocess.run([*link, "-o", str(partial), "-lrt"], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"Linking KenLM's build_binary failed:\n{done.stderr[-2000:]}")
        partial.replace(target)  # a killed build leaves no half-written tool under the real name
    return target


def write_binary(lm_dir: str | Path, arpa: str | Path, tool: str | Path) -> Path:
    """Write ``lm.bin`` (KenLM trie, probabilities unquantised: the decoder scores exactly as with the ARPA) and
    ``words.txt`` (its vocabulary, which the decoder's dictionary needs) into ``lm_dir``; returns the binary."""
    lm_dir = Path(lm_dir)
    binary = lm_dir / BINARY_NAME
    partial = binary.with_name(binary.name + ".partial")
    result = subprocess.run([str(tool), "-s", "trie", str(arpa), str(partial)], capture_output=True, text=True)
    if result.returncode:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{tool} could not convert {arpa}:\n{(result.stderr or result.stdout)[-2000:]}")
    (lm_dir / WORDS_NAME).write_text("\n".join(arpa_vocabulary(arpa)) + "\n", encoding="utf-8")
    partial.replace(binary)
    return binary


BINARY_MODES = ("auto", "yes", "no")


def refresh_binary(lm_dir: str | Path, arpa: str | Path, mode: str = "auto") -> Path | None:
    """Bring ``lm_dir``'s binary in line with ``arpa`` just written there: convert it when ``build_binary`` is found
    (``auto``) or required (``yes``, an error naming the fix when it is not); otherwise remove a binary left from an
    earlier LM, which the decoder would prefer to the new ARPA. Returns the binary, or None."""
    if mode not in BINARY_MODES:
        raise ValueError(f"binary must be one of {BINARY_MODES}, got {mode!r}")
    tool = find_build_binary() if mode != "no" else None
    if tool is None and mode == "yes":
        raise FileNotFoundError(
            "KenLM's build_binary was not found (PATH, $AI2TEXT_BUILD_BINARY or "
            f"{default_tool_path()}): compile it once with `ai2text lm install-kenlm`, or pass --binary no."
        )
    lm_dir = Path(lm_dir)
    if tool is None:
        for name in (BINARY_NAME, WORDS_NAME):
            (lm_dir / name).unlink(missing_ok=True)
        return None
    return write_binary(lm_dir, arpa, tool)
