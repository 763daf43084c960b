"""TensorBoard: each prompt's reward curve over its own steps, and image grids per step."""

from __future__ import annotations

from typing import Any

import numpy as np
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image


def image_grid(images: list[Image.Image], columns: int = 4) -> np.ndarray:
    """Tile equally sized images into one HWC uint8 array."""
    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    cols = min(columns, len(images))
    grid = Image.new("RGB", (cols * w, rows * h))
    for i, image in enumerate(images):
        grid.paste(image.convert("RGB").resize((w, h)), ((i % columns) * w, (i // columns) * h))
    return np.asarray(grid)


class TensorBoardImageLogger(Callback):
    """Logs ``reward/prompt_<index>`` at the prompt's own step (x = 0 for the initial image), and
    every ``every_n_steps`` global steps a grid of the images just scored (at most ``max_images``)."""

    def __init__(self, every_n_steps: int = 1, max_images: int = 16) -> None:
        self.every_n_steps = every_n_steps
        self.max_images = max_images
        self.images_logged = 0

    def _experiments(self, trainer: Trainer) -> list[Any]:
        return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        experiments = self._experiments(trainer)
        scored = getattr(pl_module, "scored", [])
        if not experiments or not scored:
            return
        for exp in experiments:
            for state in scored:
                exp.add_scalar(f"reward/prompt_{state.prompt.index:05d}", state.reward, state.step)
        if trainer.global_step % self.every_n_steps == 0:
            grid = image_grid([s.last.image for s in scored[: self.max_images]])
            for exp in experiments:
                exp.add_image("images/step", grid, trainer.global_step, dataformats="HWC")
            self.images_logged += 1

    def state_dict(self) -> dict[str, Any]:
        return {"images_logged": self.images_logged}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.images_logged = int(state_dict["images_logged"])
