"""Per-prompt stopping rules as a Lightning callback.

The module scores every running prompt each step and, before taking the loss, calls
``on_prompt_scored(trainer, pl_module, state)`` on every callback that defines it. Override
``should_stop`` for a custom rule (patience, a time budget, a second reward...): a stopped
prompt keeps its best image, leaves the batch, and its slot goes to the next prompt.
"""

from __future__ import annotations

import time
from typing import Any

from lightning import Callback, LightningModule, Trainer

from milr.state import PromptState


class PromptStopping(Callback):
    """Stop a prompt when its reward exceeds ``threshold``, or after ``patience`` steps without
    the best reward improving by more than ``min_delta``, or after ``max_seconds``.

    Subclass and override ``should_stop`` to add your own rule; return a short reason string
    (kept in ``stopped`` and in the callback's ``state_dict``) or ``None`` to keep going.
    """

    def __init__(
        self,
        threshold: float | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
        max_seconds: float | None = None,
    ) -> None:
        self.threshold = threshold
        self.patience = patience
        self.min_delta = min_delta
        self.max_seconds = max_seconds
        self.stopped: dict[int, str] = {}  # prompt index -> reason

    @property
    def state_key(self) -> str:
        return self._generate_state_key(threshold=self.threshold, patience=self.patience, max_seconds=self.max_seconds)

    def should_stop(self, state: PromptState) -> str | None:
        rewards = state.rewards
        if self.threshold is not None and rewards[-1] > self.threshold:
            return f"reward {rewards[-1]:.4f} > {self.threshold}"
        if self.patience is not None and len(rewards) > self.patience:
            before = max(rewards[: -self.patience])
            if max(rewards[-self.patience :]) <= before + self.min_delta:
                return f"no improvement in {self.patience} steps"
        if self.max_seconds is not None and time.perf_counter() - state.started > self.max_seconds:
            return f"time budget {self.max_seconds}s used"
        return None

    def on_prompt_scored(self, trainer: Trainer, pl_module: LightningModule, state: PromptState) -> None:
        reason = self.should_stop(state)
        if reason is not None:
            self.stopped[state.prompt.index] = reason
            pl_module.stop_prompt(state)

    def state_dict(self) -> dict[str, Any]:
        return {"stopped": dict(self.stopped)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.stopped = {int(k): v for k, v in state_dict["stopped"].items()}
