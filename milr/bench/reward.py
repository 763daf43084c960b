"""The benchmark's rewards: a free one, so a step's time is MILR's own, and a wrapper that pays
the measured reward in full but sets its score to a stop schedule."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from data.prompt import Prompt
from rewards.base import Reward, RewardOutput, score


class Brightness(Reward):
    """The default reward: nearly free and deterministic, so a step's time is MILR's own."""

    name = "brightness"

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        scores = [float(np.asarray(image, dtype=np.float32).mean()) / 255.0 for image in images]
        return RewardOutput(torch.tensor(scores, dtype=torch.float32), [{} for _ in scores])


class BenchReward(Reward):
    """The measured reward (``Brightness`` unless ``--reward-config`` names one), paid in full, its
    score halved so it stays ≤ 0.5: never above a 0.5 threshold. With ``pass_after=S``, prompt ``i``
    scores 1 from its ``1 + i % S``-th optimisation step on, so prompts stop at different steps,
    the same ones at every batch size."""

    def __init__(self, reward: Reward | None = None, pass_after: int | None = None) -> None:
        self.reward = reward or Brightness()
        self.name = self.reward.name
        self.pass_after = pass_after
        self.calls: dict[int, int] = {}

    def setup(self, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, backbone: Any = None) -> None:
        super().setup(device=device, dtype=dtype, backbone=backbone)
        self.reward.setup(device=device, dtype=dtype, backbone=backbone)

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        out = score(self.reward, images, prompts)
        scores = []
        for value, prompt in zip(out.scores.tolist(), prompts):
            step = self.calls.get(prompt.index, 0)
            self.calls[prompt.index] = step + 1
            passed = self.pass_after is not None and step >= 1 + prompt.index % self.pass_after
            scores.append(1.0 if passed else 0.5 * value)
        return RewardOutput(torch.tensor(scores, dtype=torch.float32), out.details)
