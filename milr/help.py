"""``train_free_runner.py --help``: MILR's own options, one line each, with the values of the
config in use — the full LightningCLI help (every Trainer flag) stays behind ``--help-all``."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

from docstring_parser import parse
from rich.console import Group
from rich.padding import Padding
from rich.text import Text

from data.datamodule import MILRDataModule
from milr.module import MILRModule

TOP_LEVEL = {
    "--config": "a LightningCLI YAML (main config first, then fragments such as configs/rewards/*.yaml)",
    "--output_dir": "where images, traces, summary and TensorBoard logs go; a re-run resumes there",
    "--verbose": "show Lightning's info lines and third-party warnings",
    "--print_config": "print the resolved config and exit",
    "--help-all": "the full LightningCLI help, every --trainer.* flag included",
}


def _descriptions(cls: type) -> dict[str, str]:
    """Parameter name -> the one-line description in the class's ``Args:`` docstring."""
    docs = [cls.__doc__ or "", inspect.getdoc(cls.__init__) or ""]
    return {p.arg_name: " ".join((p.description or "").split()) for doc in docs for p in parse(doc).params}


def _class(path: str) -> type:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(_value, value)) + "]"
    if hasattr(value, "class_path"):
        return str(value.class_path)
    return "null" if value is None else str(value)


def _line(flag: str, value: str, meaning: str) -> Group:
    head = Text(flag, style="bold")
    if value:
        head.append(f" {value}", style="cyan")
    if not meaning:
        return Group(head)
    return Group(head, Padding(Text(meaning.replace("``", "")), (0, 0, 0, 4)))


def _rows(lines: list, prefix: str, cls: type, values: Any, skip: tuple[str, ...] = ()) -> None:
    docs = _descriptions(cls)
    for name in inspect.signature(cls.__init__).parameters:
        if name in ("self", *skip) or name not in values:
            continue
        lines.append(_line(f"--{prefix}{name}", _value(values[name]), docs.get(name, "")))


def option_help(config: Any, default_config: Path) -> Group:
    """MILR's options with their values in ``config`` (a parsed LightningCLI namespace)."""
    lines: list = []
    for flag, meaning in TOP_LEVEL.items():
        value = config.get(flag.lstrip("-").replace("-", "_"))
        lines.append(_line(flag, "" if value is None or flag == "--config" else _value(value), meaning))
    model = config.model
    _rows(lines, "model.", MILRModule, model, skip=("batch_size",))
    backbone = model.backbone
    _rows(lines, "model.backbone.", _class(backbone.class_path), backbone.init_args)
    reward = model.reward
    if hasattr(reward, "class_path"):
        _rows(lines, "model.reward.", _class(reward.class_path), reward.init_args or {})
    _rows(lines, "data.", MILRDataModule, config.data)
    used = [str(c) for c in (config.get("config") or [])] or [str(default_config)]
    return Group(
        Text("usage: python train_free_runner.py [--config FILE ...] [--option value ...]", style="bold"),
        Text(f"Values shown: {' + '.join(used)} plus the command line.\n"),
        *lines,
        Text(
            "\nTrainer options (--trainer.precision, --trainer.devices, --trainer.callbacks, ...) and every option's "
            "type and default: --help-all. docs/options.md explains each MILR option."
        ),
    )
