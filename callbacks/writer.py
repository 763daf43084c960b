"""The Lightning side of the run folder: writes each prompt as soon as all its repeats finish,
snapshots the running ones after every step, and writes ``summary.json`` when the fit ends.
What goes where, and how a folder stays whole, is ``milr.results.write``."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning import Callback, LightningModule, Trainer

from milr.files import atomic_write
from milr.results.summary import write_summary
from milr.results.write import complete_prompt, failed_path, inflight_path, stage_repeat, write_failed


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
        self.summary = write_summary(self.output_dir, seconds, retries, written)

    def state_dict(self) -> dict[str, Any]:
        return {"written": list(self.written)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.written = list(state_dict["written"])
