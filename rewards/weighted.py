"""A weighted sum of rewards, e.g. GenEval + 0.2 · CLIPScore."""

from __future__ import annotations

import torch
from PIL import Image

from data.prompt import Prompt
from rewards.base import Reward, RewardFn, RewardOutput, register, score


@register("weighted")
class WeightedReward(Reward):
    """``Σ w_i · R_i / Σ w_i`` — normalised by the weights so the result stays in [0, 1]."""

    def __init__(self, rewards: list[Reward], weights: list[float] | None = None) -> None:
        weights = [1.0] * len(rewards) if weights is None else list(weights)
        if not rewards or len(weights) != len(rewards) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError("WeightedReward needs one non-negative weight per reward, with a positive sum")
        self.rewards: list[RewardFn] = list(rewards)
        self.weights = weights

    def setup(self, *, device="cpu", dtype=torch.float32, backbone=None) -> None:
        super().setup(device=device, dtype=dtype, backbone=backbone)
        for reward in self.rewards:
            if hasattr(reward, "setup"):
                reward.setup(device=device, dtype=dtype, backbone=backbone)

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        parts = [score(r, images, prompts) for r in self.rewards]
        total = sum(w * p.scores for w, p in zip(self.weights, parts)) / sum(self.weights)
        details = [
            {getattr(r, "name", f"reward_{j}"): {"score": float(p.scores[i]), **p.details[i]} for j, (r, p) in enumerate(zip(self.rewards, parts))}
            for i in range(len(images))
        ]
        return RewardOutput(total.clamp(0.0, 1.0), details)
