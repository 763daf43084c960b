"""Writes a run folder (``milr.results.layout``) so that it is always readable and resumable.

A prompt's folder ``<out>/<key>/`` appears whole or not at all: each finished repeat is staged
under ``<out>/.partial/<key>/`` (``samples/<r:04d>.png`` the selected image, ``initial/<r:04d>.png``,
``trace/<r:04d>.jsonl`` one line per step, ``repeats/<r:04d>.json``) and, once every repeat is
there, ``metadata.jsonl`` and ``result.json`` are added and the folder is renamed into place.
A prompt still running when a fit ends has its snapshot (latents, optimiser state, generator,
history) in ``<out>/.inflight/<key>#<r>.pt``; a prompt whose reward failed gets
``<out>/failed/<key>#<r>.json`` (prompt, reason, step) until it completes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from data.prompt import Prompt
from milr.files import atomic_write
from milr.results.layout import (
    CONFIG_FILE,
    FAILED_DIR,
    INFLIGHT,
    INITIAL_DIR,
    METADATA_FILE,
    PROMPT_FILE,
    RESULT_FILE,
    SAMPLES_DIR,
    STAGING,
    TRACE_DIR,
)
from milr.state import FailedPrompt, MILRResult


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def prompt_dir(output_dir: Path, key: str) -> Path:
    return Path(output_dir) / key


def complete_results(output_dir: Path) -> list[dict[str, Any]]:
    """The ``result.json`` of every complete prompt folder, in key order."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    return [json.loads(f.read_text()) for f in sorted(root.glob(f"*/{RESULT_FILE}"))]


def completed(output_dir: str | Path) -> set[str]:
    """Units (``<key>#<repeat>``) whose outputs are written: every repeat of a complete prompt
    folder, and the staged repeats of a prompt whose other repeats are still to come."""
    done = {f"{r['key']}#{rep['repeat']}" for r in complete_results(Path(output_dir)) for rep in r["repeats"]}
    for record in Path(output_dir, STAGING).glob("*/repeats/*.json"):
        done.add(f"{record.parent.parent.name}#{int(record.stem)}")
    return done


def stored_prompts(output_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Key -> the prompt a folder holds (``text``, ``sha``), complete or staged."""
    found = {r["key"]: r for r in complete_results(Path(output_dir))}
    for info in Path(output_dir, STAGING).glob(f"*/{PROMPT_FILE}"):
        found.setdefault(info.parent.name, json.loads(info.read_text()))
    return {key: {"text": r["prompt"], "sha": r["sha"]} for key, r in found.items()}


def result_record(result: MILRResult) -> dict[str, Any]:
    """One repeat's line of ``result.json``."""
    return {
        "repeat": result.prompt.repeat,
        "method": result.method,
        "initial_text": result.initial_text,
        "text": result.text,
        "initial_reward": result.initial_reward,
        "final_reward": result.final_reward,
        "selected_reward": result.selected_reward,
        "best_reward": result.best_reward,
        "selected_step": result.selected_step,
        "steps": result.steps,
        "stop_reason": result.stop_reason.value,
        "reward_calls": result.reward_calls,
        "decoded_images": result.decoded_images,
        "monitors": result.monitors,
        "seconds": round(result.seconds, 4),
    }


def _prompt_info(prompt: Prompt) -> dict[str, Any]:
    return {"key": prompt.key, "index": prompt.index, "prompt": prompt.text, "sha": prompt.sha}


def stage_repeat(output_dir: Path, result: MILRResult) -> None:
    """Write one finished repeat into the prompt's staging folder (its record goes last)."""
    prompt, r = result.prompt, result.prompt.repeat
    stage = Path(output_dir, STAGING, prompt.key)
    if not (stage / PROMPT_FILE).is_file():
        atomic_write(stage / "metadata.json", json.dumps(prompt.metadata))
        atomic_write(stage / PROMPT_FILE, json.dumps(_prompt_info(prompt)))
    atomic_write(stage / SAMPLES_DIR / f"{r:04d}.png", png_bytes(result.image))
    atomic_write(stage / INITIAL_DIR / f"{r:04d}.png", png_bytes(result.initial_image))
    atomic_write(stage / TRACE_DIR / f"{r:04d}.jsonl", "".join(json.dumps(s.to_json()) + "\n" for s in result.history))
    atomic_write(stage / "repeats" / f"{r:04d}.json", json.dumps(result_record(result)))


def complete_prompt(output_dir: Path, prompt: Prompt, repeats: int) -> bool:
    """Once all ``repeats`` are staged: add ``metadata.jsonl`` and ``result.json`` and rename the
    folder into place, so readers see the whole prompt or nothing. Returns whether it did."""
    stage = Path(output_dir, STAGING, prompt.key)
    records = [stage / "repeats" / f"{r:04d}.json" for r in range(repeats)]
    if not all(f.is_file() for f in records):
        return False
    final = prompt_dir(output_dir, prompt.key)
    if final.exists():
        raise FileExistsError(f"{final} exists already; refusing to overwrite a complete prompt")
    atomic_write(stage / METADATA_FILE, json.dumps(prompt.metadata or {"prompt": prompt.text}) + "\n")
    result = {**_prompt_info(prompt), "repeats": [json.loads(f.read_text()) for f in records]}
    atomic_write(stage / RESULT_FILE, json.dumps(result, indent=1))
    os.rename(stage, final)
    _drop_staging_files(final)
    return True


def _drop_staging_files(folder: Path) -> None:
    shutil.rmtree(folder / "repeats", ignore_errors=True)
    (folder / PROMPT_FILE).unlink(missing_ok=True)
    (folder / "metadata.json").unlink(missing_ok=True)


def _key(uid: str) -> str:
    return uid.rsplit("#", 1)[0]


def recover(output_dir: str | Path, repeats: int, keys: set[str] | None = None) -> set[str]:
    """Finish what a killed run left between two writes: a staged prompt whose repeats are all
    recorded is completed, a complete folder loses leftover staging files, and the in-flight
    snapshot of a unit that was written is dropped. ``keys``: only these prompts (this rank's
    shard; the other ranks recover theirs at the same time). Returns the units complete now (``completed``)."""
    out = Path(output_dir)
    for info in sorted(out.glob(f"{STAGING}/*/{PROMPT_FILE}")):
        if keys is None or info.parent.name in keys:
            stored = json.loads(info.read_text())
            prompt = Prompt(stored["prompt"], stored["index"], json.loads((info.parent / "metadata.json").read_text()), key=stored["key"])
            complete_prompt(out, prompt, repeats)
    for result in out.glob(f"*/{RESULT_FILE}"):
        if keys is None or result.parent.name in keys:
            _drop_staging_files(result.parent)
    done = completed(out)
    for snapshot in out.glob(f"{INFLIGHT}/*.pt"):
        if snapshot.stem in done and (keys is None or _key(snapshot.stem) in keys):
            snapshot.unlink()
    return done


def failed_path(output_dir: Path, prompt: Prompt) -> Path:
    return Path(output_dir) / FAILED_DIR / f"{prompt.uid}.json"


def write_failed(output_dir: Path, failure: FailedPrompt) -> dict[str, Any]:
    """Record why a prompt has no result (the prompt, the reason, the step whose reward failed)."""
    prompt = failure.prompt
    record = {
        "uid": prompt.uid,
        "index": prompt.index,
        "repeat": prompt.repeat,
        "prompt": prompt.text,
        "metadata": prompt.metadata,
        "reason": failure.reason,
        "step": failure.step,
    }
    atomic_write(failed_path(output_dir, prompt), json.dumps(record, indent=1))
    return record


def failed_records(output_dir: Path) -> list[dict[str, Any]]:
    """The failure records of prompts that have not completed since, in file order."""
    folder = Path(output_dir) / FAILED_DIR
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def inflight_path(output_dir: Path, uid: str) -> Path:
    return Path(output_dir, INFLIGHT, f"{uid}.pt")


def load_inflight(output_dir: str | Path, keys: set[str] | None = None) -> list[dict[str, Any]]:
    """The snapshots an interrupted run left (written by this project's own writer, so trusted);
    ``keys``: of these prompts only."""
    files = sorted(Path(output_dir, INFLIGHT).glob("*.pt"))
    return [torch.load(f, weights_only=False) for f in files if keys is None or _key(f.stem) in keys]


def save_config(out: Path, text: str) -> None:
    """``config.yaml`` is the first run's; a resume whose config differs (in settings that do not
    change results, or the prompt range) keeps its own next to it instead of overwriting it."""
    path = out / CONFIG_FILE
    if not path.is_file():
        atomic_write(path, text)
    elif path.read_text() != text:
        n = len(list(out.glob("config.resume-*.yaml"))) + 1
        atomic_write(out / f"config.resume-{n}.yaml", text)
