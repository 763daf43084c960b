"""The reward protocol every reward model implements, and helpers to call any of them.

A reward maps decoded images and their prompts to scores in [0, 1] (higher is better).
Anything callable as ``reward(images, prompts) -> Tensor[B]`` works; subclassing ``Reward``
adds per-image details for logs and a ``setup`` hook to learn the backbone's device/dtype.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch
from PIL import Image

from data.prompt import Prompt


@dataclass
class RewardOutput:
    """Scores ``[B]`` in [0, 1] plus one JSON-serialisable dict of details per image."""

    scores: torch.Tensor
    details: list[dict[str, Any]] = field(default_factory=list)


@runtime_checkable
class RewardFn(Protocol):
    def __call__(self, images: list[Image.Image], prompts: list[Prompt]) -> torch.Tensor: ...


class Reward:
    """Base class for reward models.

    Subclasses implement ``evaluate``; ``__call__`` returns just the scores so a ``Reward``
    satisfies ``RewardFn``. Models should be loaded lazily (first ``evaluate``) and once.
    """

    #: name used in logs and in the registry
    name: str = "reward"

    def setup(self, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, backbone: Any = None) -> None:
        """Called once before scoring with the backbone's device and dtype (and the backbone itself)."""
        self.device = torch.device(device)
        self.dtype = dtype

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        raise NotImplementedError

    def __call__(self, images: list[Image.Image], prompts: list[Prompt]) -> torch.Tensor:
        return self.evaluate(images, prompts).scores


class FunctionReward(Reward):
    """Adapts a plain ``(images, prompts) -> Tensor`` function to the ``Reward`` class."""

    def __init__(self, fn: RewardFn) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        return RewardOutput(scores=self.fn(images, prompts))


def as_reward(reward: RewardFn | Reward) -> Reward:
    """A ``Reward`` as is; any other callable wrapped in ``FunctionReward``."""
    if isinstance(reward, Reward):
        return reward
    if not callable(reward):
        raise TypeError(f"a reward must be callable as reward(images, prompts), got {type(reward).__name__}")
    return FunctionReward(reward)


def score(reward: RewardFn | Reward, images: list[Image.Image], prompts: Sequence[Prompt]) -> RewardOutput:
    """Call any reward and validate its answer: shape ``[B]``, finite, inside [0, 1].

    A reward that returns garbage is an error, never a score: MILR would otherwise optimise
    towards the garbage.
    """
    prompts = list(prompts)
    if isinstance(reward, Reward):
        out = reward.evaluate(images, prompts)
    else:
        out = RewardOutput(scores=reward(images, prompts))
    scores = torch.as_tensor(out.scores, dtype=torch.float32).detach().cpu().reshape(-1)
    name = getattr(reward, "name", getattr(reward, "__name__", type(reward).__name__))
    if scores.numel() != len(images):
        raise ValueError(f"reward {name!r} returned {scores.numel()} scores for {len(images)} images")
    if not torch.isfinite(scores).all() or (scores < 0).any() or (scores > 1).any():
        raise ValueError(f"reward {name!r} returned scores outside [0, 1] or non-finite: {scores.tolist()}")
    details = out.details or [{} for _ in images]
    return RewardOutput(scores=scores, details=details)


_REGISTRY: dict[str, Callable[..., RewardFn]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make a reward constructible by name (``rewards.build(name, **kw)``)."""

    def wrap(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"reward name {name!r} already registered by {_REGISTRY[name]}")
        _REGISTRY[name] = cls
        cls.name = name
        return cls

    return wrap


def build(name: str, **kwargs: Any) -> RewardFn:
    """Instantiate a registered reward by name."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown reward {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)


def registered() -> list[str]:
    return sorted(_REGISTRY)


def from_config(path: str | os.PathLike) -> Reward:
    """The reward a LightningCLI YAML configures (``model.reward``, as in ``configs/rewards/*.yaml``,
    or ``class_path`` / ``init_args`` at the top), built as the runner builds it. Lets tools such as
    ``milr.bench`` use any reward without importing a concrete one."""
    import yaml
    from jsonargparse import ArgumentParser

    with open(path) as f:
        node = yaml.safe_load(f)
    if isinstance(node, dict) and "model" in node:
        node = (node["model"] or {}).get("reward")
    if not isinstance(node, dict) or "class_path" not in node:
        raise ValueError(f"{path}: no reward in it; expected model.reward.class_path (as in configs/rewards/*.yaml) or a top-level class_path")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--reward", type=Reward)
    return parser.instantiate_classes(parser.parse_object({"reward": node})).reward
