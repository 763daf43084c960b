"""Reward models: one protocol (``rewards.base``), one registry, one file per family.

Importing ``rewards`` is cheap; ``build(name)`` imports the reward families on first use so
every registered name is available.
"""

from __future__ import annotations

import importlib
from typing import Any

from rewards import base
from rewards.base import CallPolicy, Reward, RewardFn, RewardOutput, TransientRewardError, as_reward, register, score

FAMILIES = (
    "pixel", "weighted", "geneval", "shapes", "t2i_compbench", "mixed", "wise", "unified_reward", "clip_score", "self_reward",
    "preference", "vlm_yes_no",
)


def registered() -> list[str]:
    """Every reward name, after importing all families."""
    for family in FAMILIES:
        importlib.import_module(f"rewards.{family}")
    return base.registered()


def build(name: str, **kwargs: Any) -> RewardFn:
    """Instantiate a reward by registry name, e.g. ``build("geneval")``."""
    registered()
    return base.build(name, **kwargs)


__all__ = [
    "CallPolicy", "Reward", "RewardFn", "RewardOutput", "TransientRewardError", "as_reward", "build", "register", "registered", "score",
]
