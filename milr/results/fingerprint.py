"""A run folder holds one run's results: the run's identity is a fingerprint of every setting
that changes results (one writer at a time is ``milr.results.lock``).

``run.json`` records the fingerprint and the settings behind it when a folder is first used; a
later run into the folder must have the same fingerprint. Settings that cannot change results
(devices, batch size, progress bar, logging, time limits, the prompt range) do not count; the
prompt source is checked prompt by prompt instead (each folder stores its prompt's hash), so
several files of one benchmark can share a folder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from milr.results.layout import RESULT_FILE, RUN_FILE

#: config entries that never change what a run produces (dotted paths; a prefix covers its children)
NOT_RESULTS = (
    "output_dir", "verbose", "tensorboard_root", "config", "print_config", "new_run",
    "model.batch_size", "model.backbone.init_args.device",
    "data.path", "data.prompts", "data.format", "data.start", "data.end", "data.batch_size", "data.max_chars",
)
#: of the Trainer, only these change results (numerics and the user's stop-rule callbacks)
TRAINER_RESULTS = ("precision", "callbacks")


class RunMismatch(Exception):
    """The folder holds results of other settings or other prompts; the message says what differs."""


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def result_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings of a resolved config (``parser.dump`` as a dict) that change results, flat."""
    flat = _flatten(config)
    keep = {}
    for key, value in flat.items():
        if any(key == skip or key.startswith(skip + ".") for skip in NOT_RESULTS):
            continue
        if key.startswith("trainer.") and not any(key == f"trainer.{t}" or key.startswith(f"trainer.{t}.") for t in TRAINER_RESULTS):
            continue
        keep[key] = value
    return keep


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_run(output_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """Compare with the folder's ``run.json``; returns what to write when the folder is new (None
    when it matches). A difference is a ``RunMismatch`` saying what differs and the two ways out."""
    path = Path(output_dir) / RUN_FILE
    record = {"fingerprint": fingerprint(settings), "settings": settings}
    if not path.is_file():
        if any(Path(output_dir).glob(f"*/{RESULT_FILE}")):
            raise RunMismatch(
                f"{output_dir} holds results but no {RUN_FILE} (written by an older milr): its settings are unknown. "
                "Use a new --output_dir, or --new_run NAME to start a separate run inside it"
            )
        return record
    stored = json.loads(path.read_text())
    if stored["fingerprint"] == record["fingerprint"]:
        return None
    old = stored["settings"]
    diffs = [f"{k}: {old.get(k, '(unset)')} -> {settings.get(k, '(unset)')}" for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]
    shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
    raise RunMismatch(
        f"{output_dir} holds a run with other settings ({shown}). Use a new --output_dir, or --new_run NAME to "
        f"start a separate run inside it ({Path(output_dir) / 'NAME'})"
    )


def check_prompts(output_dir: Path, stored: dict[str, dict[str, Any]], prompts: list[Any]) -> None:
    """Every prompt whose folder exists must be the prompt stored there (same text and metadata)."""
    for prompt in prompts:
        there = stored.get(prompt.key)
        if there is not None and there["sha"] != prompt.sha:
            raise RunMismatch(
                f"{Path(output_dir) / prompt.key} holds another prompt ({there['text'][:40]!r}) than this run's "
                f"{prompt.key} ({prompt.text[:40]!r}); a different prompt file? Use a new --output_dir or --new_run NAME"
            )
