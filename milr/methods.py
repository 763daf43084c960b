"""The methods one runner compares at equal cost (``model.method``).

They share the backbone, the per-prompt seeds, stage 0 (think text + one image, scored), the
stop rules and the output layout, and differ only in what a later step does:

- ``base``: nothing; the stage-0 image is the result (a step budget of 0).
- ``best_of_n``: a fresh image from the prompt's own generator, same image prompt as stage 0,
  no forced prefix and no latents. The stage-0 think text is greedy, so re-generating it would
  give the same text: only the image is re-sampled. ``best_of_n_think: sample`` draws a fresh
  think text (temperature 1, the prompt's generator) before each later image instead, so
  best-of-N searches over plans too. N images in all, N defaulting to MILR's reward-call budget
  for the same options, so both are charged the same reward calls.
- ``milr``: the latent update towards the reward R.
- ``anti_reward``: the same update towards 1 − R, while R is what is recorded, reported and
  used for stopping and selection: the control that shows how much of a gain comes from the
  reward rather than from re-sampling (docs/method.md).
"""

from __future__ import annotations

from typing import Literal

import torch

Method = Literal["base", "best_of_n", "milr", "anti_reward"]
METHODS = ("base", "best_of_n", "milr", "anti_reward")
UPDATING = ("milr", "anti_reward")  # the methods whose latents move


def reward_call_budget(max_steps: int, estimator: str, samples_per_step: int) -> int:
    """Reward calls MILR makes on a prompt that runs its whole budget: the stage-0 image, K per
    later step, and with ``rloo`` the K stage-0 candidates (``max_steps + 1`` for the reference)."""
    k = samples_per_step
    return 1 + k * max_steps + (k if estimator == "rloo" else 0)


def step_budget(method: str, max_steps: int, estimator: str, samples_per_step: int, best_of_n: int | None) -> int:
    """Steps after stage 0 a prompt may take under ``method`` (best-of-N scores one image a step)."""
    if method == "base":
        return 0
    if method == "best_of_n":
        n = reward_call_budget(max_steps, estimator, samples_per_step) if best_of_n is None else best_of_n
        return n - 1
    return max_steps


def optimised_reward(method: str, rewards: torch.Tensor) -> torch.Tensor:
    """What the update maximises: R, or 1 − R for the ``anti_reward`` control."""
    return 1.0 - rewards if method == "anti_reward" else rewards
