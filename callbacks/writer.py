"""Writes each finished prompt in GenEval's layout, atomically, plus ``summary.json``.

``<out>/<index:05d>/metadata.jsonl`` (the prompt's JSON), ``samples/0000.png`` (the selected
image), ``initial.png``, ``trace.jsonl`` (one line per step) and, last, ``result.json``: its
presence marks the prompt complete, so an interrupted run resumes without redoing it.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from lightning import Callback, LightningModule, Trainer
from PIL import Image

from milr.state import MILRResult

RESULT_FILE = "result.json"
RUNS_FILE = "runs.jsonl"  # one line per finished run: wall seconds, prompts written


def _file_mode() -> int:
    """The mode ``open()`` would give a new file under the process umask (0644 under 022);
    ``mkstemp`` always makes 0600, which other users of a shared results folder cannot read."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def prompt_dir(output_dir: Path, index: int) -> Path:
    return Path(output_dir) / f"{index:05d}"


def completed(output_dir: str | Path) -> set[int]:
    """Indices of prompts whose outputs are complete (``result.json`` written)."""
    root = Path(output_dir)
    if not root.is_dir():
        return set()
    return {int(d.name) for d in root.iterdir() if d.name.isdigit() and (d / RESULT_FILE).is_file()}


def write_result(output_dir: Path, result: MILRResult) -> dict[str, Any]:
    """Write one prompt's files; ``result.json`` goes last and is returned."""
    folder = prompt_dir(output_dir, result.prompt.index)
    metadata = result.prompt.metadata or {"prompt": result.prompt.text}
    atomic_write(folder / "metadata.jsonl", json.dumps(metadata) + "\n")
    atomic_write(folder / "samples" / "0000.png", png_bytes(result.image))
    atomic_write(folder / "initial.png", png_bytes(result.initial_image))
    atomic_write(folder / "trace.jsonl", "".join(json.dumps(r.to_json()) + "\n" for r in result.history))
    record = {
        "index": result.prompt.index,
        "prompt": result.prompt.text,
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
    atomic_write(folder / RESULT_FILE, json.dumps(record, indent=1))
    return record


def summarize(output_dir: Path, seconds: float) -> dict[str, Any]:
    """Means over every complete prompt in ``output_dir`` (this run and earlier, resumed ones).

    ``seconds_this_run`` is this run's wall time; ``seconds_all_runs`` adds the runs logged in
    ``runs.jsonl`` before it (the folder's total)."""
    records = [json.loads((prompt_dir(output_dir, i) / RESULT_FILE).read_text()) for i in sorted(completed(output_dir))]
    n = len(records)

    def mean(key: str) -> float | None:
        return sum(r[key] for r in records) / n if n else None

    runs = output_dir / RUNS_FILE
    earlier = sum(json.loads(line)["seconds"] for line in runs.read_text().splitlines()) if runs.is_file() else 0.0
    return {
        "prompts": n,
        "initial_reward_mean": mean("initial_reward"),
        "final_reward_mean": mean("final_reward"),
        "selected_reward_mean": mean("selected_reward"),
        "best_reward_mean": mean("best_reward"),
        "mean_steps": mean("steps"),
        "seconds_this_run": round(seconds, 3),
        "seconds_all_runs": round(earlier + seconds, 3),
    }


class OutputWriter(Callback):
    """Writes every prompt as soon as it finishes, and ``summary.json`` when the fit ends."""

    def __init__(self, output_dir: str | Path) -> None:
        self.output_dir = Path(output_dir)
        self.written: list[int] = []
        self._cursor = 0
        self._start = time.perf_counter()
        self.summary: dict[str, Any] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()
        self._cursor = len(pl_module.finished)

    def _flush(self, pl_module: LightningModule) -> None:
        for result in pl_module.finished[self._cursor :]:
            write_result(self.output_dir, result)
            self.written.append(result.prompt.index)
        self._cursor = len(pl_module.finished)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._flush(pl_module)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # after the module's on_train_end, which finishes prompts still running
        self._flush(pl_module)
        seconds = time.perf_counter() - self._start
        self.summary = summarize(self.output_dir, seconds)
        atomic_write(self.output_dir / "summary.json", json.dumps(self.summary, indent=1))
        runs = self.output_dir / RUNS_FILE
        earlier = runs.read_text() if runs.is_file() else ""
        line = json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 3), "prompts_written": len(self.written)})
        atomic_write(runs, earlier + line + "\n")

    def state_dict(self) -> dict[str, Any]:
        return {"written": list(self.written)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.written = list(state_dict["written"])
