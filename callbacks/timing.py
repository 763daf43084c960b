"""Step timing: wall time per MILR step and the share spent decoding, scoring and updating."""

from __future__ import annotations

import time
from typing import Any

from lightning import Callback, LightningModule, Trainer


class StepTimer(Callback):
    """Logs ``time/step_s`` and the module's phase timings (``time/decode_s``, ``time/reward_s``,
    ``time/update_s``) every step; ``state_dict`` keeps the totals."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {"step": 0.0, "steps": 0.0}
        self._start = 0.0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = time.perf_counter() - self._start
        phases = {"step": step, **getattr(pl_module, "timings", {})}
        for name, seconds in phases.items():
            self.totals[name] = self.totals.get(name, 0.0) + seconds
        self.totals["steps"] += 1
        for logger in trainer.loggers:
            logger.log_metrics({f"time/{k}_s": v for k, v in phases.items()}, step=trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return dict(self.totals)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.totals = dict(state_dict)
