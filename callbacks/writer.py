"""Writes each finished prompt in GenEval's layout, atomically, plus ``summary.json``; keeps the
prompts still running resumable.

A prompt's folder ``<out>/<key>/`` appears whole or not at all: each finished repeat is staged
under ``<out>/.partial/<key>/`` (``samples/<r:04d>.png`` the selected image, ``initial/<r:04d>.png``,
``trace/<r:04d>.jsonl`` one line per step, ``repeats/<r:04d>.json``) and, once every repeat is
there, ``metadata.jsonl`` and ``result.json`` are added and the folder is renamed into place.
A prompt still running when a fit ends (``max_time``, Ctrl-C, a crash, a killed process) is not
complete: after every step its snapshot (latents, optimiser state, generator, history) is in
``<out>/.inflight/<key>#<r>.pt``, and the next run continues it from there.
A prompt whose reward failed (``on_reward_failure: skip``) gets ``<out>/failed/<key>#<r>.json``
instead (prompt, reason, step): it is not complete, so the next run takes it again (from its
snapshot, when it failed mid-run), and the record goes once it completes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning import Callback, LightningModule, Trainer
from PIL import Image

from data.prompt import Prompt
from milr.files import atomic_write
from milr.state import FailedPrompt, MILRResult

RESULT_FILE = "result.json"
PROMPT_FILE = "prompt.json"  # in a staged folder: which prompt it holds (resume checks it)
RUNS_FILE = "runs.jsonl"  # one line per finished run: wall seconds, prompts written
FAILED_DIR = "failed"  # one record per prompt whose reward failed and that has not completed since
STAGING = ".partial"
INFLIGHT = ".inflight"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def prompt_dir(output_dir: Path, key: str) -> Path:
    return Path(output_dir) / key


def _complete_results(output_dir: Path) -> list[dict[str, Any]]:
    root = Path(output_dir)
    if not root.is_dir():
        return []
    return [json.loads(f.read_text()) for f in sorted(root.glob(f"*/{RESULT_FILE}"))]


def completed(output_dir: str | Path) -> set[str]:
    """Units (``<key>#<repeat>``) whose outputs are written: every repeat of a complete prompt
    folder, and the staged repeats of a prompt whose other repeats are still to come."""
    done = {f"{r['key']}#{rep['repeat']}" for r in _complete_results(Path(output_dir)) for rep in r["repeats"]}
    for record in Path(output_dir, STAGING).glob("*/repeats/*.json"):
        done.add(f"{record.parent.parent.name}#{int(record.stem)}")
    return done


def stored_prompts(output_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Key -> the prompt a folder holds (``text``, ``sha``), complete or staged."""
    found = {r["key"]: r for r in _complete_results(Path(output_dir))}
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
    atomic_write(stage / "samples" / f"{r:04d}.png", png_bytes(result.image))
    atomic_write(stage / "initial" / f"{r:04d}.png", png_bytes(result.initial_image))
    atomic_write(stage / "trace" / f"{r:04d}.jsonl", "".join(json.dumps(s.to_json()) + "\n" for s in result.history))
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
    atomic_write(stage / "metadata.jsonl", json.dumps(prompt.metadata or {"prompt": prompt.text}) + "\n")
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


def summarize(output_dir: Path, seconds: float, reward_retries: int = 0) -> dict[str, Any]:
    """Means over every complete prompt in ``output_dir`` (this run and earlier, resumed ones),
    each repeat once.

    ``seconds_this_run`` is this run's wall time; ``seconds_all_runs`` adds the runs logged in
    ``runs.jsonl`` before it (the folder's total). ``failed`` lists the prompts whose reward failed
    and that are still not complete; ``reward_retries`` counts this run's repeated reward calls."""
    results = _complete_results(output_dir)
    records = [rep for r in results for rep in r["repeats"]]
    n = len(records)

    def mean(key: str) -> float | None:
        return sum(r[key] for r in records) / n if n else None

    runs = Path(output_dir) / RUNS_FILE
    earlier = sum(json.loads(line)["seconds"] for line in runs.read_text().splitlines()) if runs.is_file() else 0.0
    return {
        "prompts": len(results),
        "images": n,
        "initial_reward_mean": mean("initial_reward"),
        "final_reward_mean": mean("final_reward"),
        "selected_reward_mean": mean("selected_reward"),
        "best_reward_mean": mean("best_reward"),
        "mean_steps": mean("steps"),
        "in_flight": sorted(p.stem for p in Path(output_dir, INFLIGHT).glob("*.pt")),
        "seconds_this_run": round(seconds, 3),
        "seconds_all_runs": round(earlier + seconds, 3),
        "reward_retries": reward_retries,
        "failed": [{k: r[k] for k in ("uid", "index", "prompt", "reason", "step")} for r in failed_records(output_dir)],
    }


def inflight_path(output_dir: Path, uid: str) -> Path:
    return Path(output_dir, INFLIGHT, f"{uid}.pt")


def load_inflight(output_dir: str | Path, keys: set[str] | None = None) -> list[dict[str, Any]]:
    """The snapshots an interrupted run left (written by this project's own writer, so trusted);
    ``keys``: of these prompts only."""
    files = sorted(Path(output_dir, INFLIGHT).glob("*.pt"))
    return [torch.load(f, weights_only=False) for f in files if keys is None or _key(f.stem) in keys]


class OutputWriter(Callback):
    """Writes every prompt as soon as all its repeats finish, snapshots the running ones after
    every step, and writes ``summary.json`` when the fit ends. ``fast_dev_run`` writes nothing
    (Lightning's convention: a smoke test leaves no results)."""

    def __init__(self, output_dir: str | Path, repeats: int = 1) -> None:
        self.output_dir = Path(output_dir)
        self.repeats = repeats
        self.written: list[str] = []
        self._failed_cursor = 0
        self._start = time.perf_counter()
        self._merged = False  # on_train_end wrote the whole run's summary (several ranks)
        self.summary: dict[str, Any] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()
        self._merged = False
        self._failed_cursor = len(pl_module.failed)

    def _flush(self, pl_module: LightningModule) -> None:
        for result in pl_module.take_finished():  # written, then released: a long run's memory stays flat
            # first: a crash before the prompt completes leaves it incomplete (retried), never failed and complete
            failed_path(self.output_dir, result.prompt).unlink(missing_ok=True)
            stage_repeat(self.output_dir, result)
            inflight_path(self.output_dir, result.prompt.uid).unlink(missing_ok=True)
            if complete_prompt(self.output_dir, result.prompt, self.repeats):
                self.written.append(result.prompt.key)
        self._flush_failed(pl_module)

    def _flush_failed(self, pl_module: LightningModule) -> None:
        for failure in pl_module.failed[self._failed_cursor :]:
            write_failed(self.output_dir, failure)
        self._failed_cursor = len(pl_module.failed)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.fast_dev_run:
            return
        self._flush(pl_module)
        for state in pl_module.active():
            buffer = io.BytesIO()
            torch.save(pl_module.snapshot(state), buffer)
            atomic_write(inflight_path(self.output_dir, state.prompt.uid), buffer.getvalue())

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """A fit of several ranks that ended normally: every rank has written its prompts, so rank
        0 writes one ``summary.json`` and one ``runs.jsonl`` line for the whole run (the slowest
        rank's seconds, every rank's retries). A fit that fails has no such meeting point: then
        each rank writes what it sees at teardown."""
        if trainer.fast_dev_run or trainer.world_size < 2 or not dist.is_initialized():
            return
        self._flush(pl_module)
        mine = (time.perf_counter() - self._start, pl_module.retries, len(self.written))
        parts: list[Any] = [None] * trainer.world_size
        dist.all_gather_object(parts, mine)
        self._merged = True
        if trainer.global_rank == 0:
            self._write_summary(max(p[0] for p in parts), sum(p[1] for p in parts), sum(p[2] for p in parts))

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if trainer.fast_dev_run:
            return
        self._flush(pl_module)
        if not self._merged:
            self._write_summary(time.perf_counter() - self._start, pl_module.retries, len(self.written))

    def _write_summary(self, seconds: float, retries: int, written: int) -> None:
        self.summary = summarize(self.output_dir, seconds, retries)
        atomic_write(self.output_dir / "summary.json", json.dumps(self.summary, indent=1))
        runs = self.output_dir / RUNS_FILE
        earlier = runs.read_text() if runs.is_file() else ""
        line = json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 3),
                           "prompts_written": written, "reward_retries": retries})
        atomic_write(runs, earlier + line + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {"written": list(self.written)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.written = list(state_dict["written"])
