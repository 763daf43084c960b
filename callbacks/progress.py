"""A rich progress display over prompts and steps (Lightning's bars count epochs, which here
are MILR steps of a changing set of prompts)."""

from __future__ import annotations

from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


class PromptProgressBar(ProgressBar):
    """One bar for finished prompts, one line for the step and the running prompts' rewards."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self._enabled = True
        self.console = console
        self.progress: Progress | None = None
        self._prompts = self._steps = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self._enabled:
            return
        finished = pl_module.finished_count + len(pl_module.failed)  # done with, either way
        running = pl_module.active()
        if self.progress is None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"), console=self.console, transient=False,
            )
            self.progress.start()
            total = finished + len(running) + getattr(batch, "pending", 0)
            self._prompts = self.progress.add_task("prompts", total=total, info="", count="")
            # the number of steps is not known in advance (prompts stop early): count them, no total
            self._steps = self.progress.add_task("steps", total=None, info="", count="")
        rewards = " ".join(f"#{s.prompt.index}:{s.reward:.3f}@{s.step}" for s in running[:6])
        total = self.progress.tasks[self._prompts].total
        failed = f", failed {len(pl_module.failed)}" if pl_module.failed else ""
        self.progress.update(self._prompts, completed=finished, info=f"running {len(running)}{failed}", count=f"{finished}/{total}")
        self.progress.update(self._steps, completed=trainer.global_step, info=rewards, count=str(trainer.global_step))

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.progress is not None:
            finished = pl_module.finished_count + len(pl_module.failed)
            total = self.progress.tasks[self._prompts].total
            self.progress.update(self._prompts, completed=finished, count=f"{finished}/{total}")
            self.progress.stop()
            self.progress = None
