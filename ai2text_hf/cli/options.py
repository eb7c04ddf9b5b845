"""Command-line arguments generated from an options dataclass, and the dataclass read back from them.

Like transformers' ``HfArgumentParser``, which cannot be used here: it imports transformers (seconds), and
``ai2text --help`` builds every subcommand's arguments on each start. Each field becomes ``--field-name``
(or its ``flags`` metadata) with the field's help and default; booleans are switches.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")
_SCALARS = {"int": int, "float": float, "str": str}
_CLI_KEYS = ("choices", "metavar", "action")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One argument per field of ``cls`` with help metadata; the dest is the field name, and a field's ``group``
    metadata puts it in an argument group of that title."""
    groups: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if "help" not in meta:
            continue
        flags = meta.get("flags") or (f"--{field.name.replace('_', '-')}",)
        kwargs: dict[str, Any] = {key: meta[key] for key in _CLI_KEYS if key in meta}
        target = parser
        if "group" in meta:
            target = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        help_text = meta["help"].replace("%", "%%")
        if _type_names(field.type) == ["bool"]:
            kwargs["action"] = "store_true"
        else:
            kwargs.setdefault("type", _scalar_type(field.type))
            if "choices" not in kwargs:
                kwargs.setdefault("metavar", flags[0].lstrip("-").replace("-", "_").upper())
            if field.default is not None and "(default" not in help_text:
                help_text = f"{help_text.rstrip('.')} (default {field.default})."
        target.add_argument(*flags, dest=field.name, help=help_text, **kwargs)


def dataclass_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """An instance of ``cls`` from the arguments ``add_dataclass_arguments`` added (absent ones: defaults)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    # An argument not given is None (argparse's default): the dataclass's default then applies.
    return cls(**{key: value for key, value in values.items() if value is not None or defaults[key] is None})


def _type_names(annotation: Any) -> list[str]:
    """The parts of a field's annotation, as written (``"int | None"`` -> ``["int", "None"]``): read from the
    text, because evaluating annotations (``typing.get_type_hints``) costs more than building the parser."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return [part.strip() for part in text.split("|")]


def _scalar_type(annotation: Any) -> type:
    """The int/float/str a field's annotation (``int | None``, ``str | Sequence[...]``) reads from the command line."""
    return next((_SCALARS[name] for name in _type_names(annotation) if name in _SCALARS), str)
