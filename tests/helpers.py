"""Rewards used by tests (importable by class path from YAML/CLI)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from data.prompt import Prompt
from rewards.base import Reward, RewardOutput, TransientRewardError


def mean_brightness(images: list[Image.Image], prompts: list[Prompt]) -> torch.Tensor:
    """A plain-function reward: mean pixel value in [0, 1]."""
    return torch.tensor([float(np.asarray(im.convert("L"), dtype=np.float64).mean()) / 255.0 for im in images])


class ConstantReward(Reward):
    """Always ``value``: isolates the objective's mechanics from any reward signal."""

    def __init__(self, value: float = 0.5) -> None:
        self.value = value
        self.calls = 0

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        self.calls += 1
        return RewardOutput(torch.full((len(images),), self.value))


class ScriptedReward(Reward):
    """Returns scores from a per-prompt script: ``script[prompt.index][call_number]``."""

    def __init__(self, script: dict[int, list[float]]) -> None:
        self.script = script
        self.seen: dict[int, int] = {}

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        scores = []
        for p in prompts:
            n = self.seen.get(p.index, 0)
            self.seen[p.index] = n + 1
            values = self.script[p.index]
            scores.append(values[min(n, len(values) - 1)])
        return RewardOutput(torch.tensor(scores))


class FailingReward(Reward):
    """Scores like ``mean_brightness`` but raises on call number ``fail_on`` (a crashed run)."""

    def __init__(self, fail_on: int = 3) -> None:
        self.fail_on = fail_on
        self.calls = 0

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("reward server went away")
        return RewardOutput(mean_brightness(images, prompts))


class UnreliableReward(Reward):
    """Scores like ``mean_brightness``, except on the (1-based) call numbers in ``fail_calls`` and for
    calls holding a prompt in ``fail_prompts`` or in the JSON list in the file ``outage`` (while it
    exists: a server that comes back). Those calls hang ``hang`` seconds and then answer anyway (a
    late answer), or without ``hang`` raise, a ``TransientRewardError`` when ``transient``."""

    name = "unreliable"

    def __init__(self, fail_calls: Sequence[int] = (), fail_prompts: Sequence[int] = (), outage: Optional[str] = None,
                 hang: float = 0.0, transient: bool = True) -> None:
        self.fail_calls, self.fail_prompts, self.outage = set(fail_calls), set(fail_prompts), outage
        self.hang, self.transient = hang, transient
        self.calls = 0

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        self.calls += 1
        down = self.fail_prompts | set(json.loads(Path(self.outage).read_text()) if self.outage and Path(self.outage).is_file() else [])
        if self.calls in self.fail_calls or any(p.index in down for p in prompts):
            if self.hang:
                time.sleep(self.hang)
            else:
                raise (TransientRewardError if self.transient else RuntimeError)(f"reward server went away (call {self.calls})")
        return RewardOutput(mean_brightness(images, prompts))


def script_judge(reward, monkeypatch, answers: list[str]) -> list:
    """Replace a judge reward's generation by scripted ``answers``; returns the conversations asked."""
    asked = []

    def generate(convs):
        asked.append(convs)
        return [answers.pop(0) for _ in convs]

    monkeypatch.setattr(reward.judge, "generate", generate)
    return asked


class CrashingReward(Reward):
    """Scores like ``mean_brightness``; raises on call ``$MILR_TEST_CRASH_ON`` (unset: never). The
    crash point lives outside the config, so a resumed run has the same settings as the crashed one."""

    def __init__(self) -> None:
        self.calls = 0

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        import os

        self.calls += 1
        if str(self.calls) == os.environ.get("MILR_TEST_CRASH_ON"):
            raise RuntimeError("reward server went away")
        return RewardOutput(mean_brightness(images, prompts))


class SlowReward(Reward):
    """``mean_brightness`` that takes ``seconds`` per call (a slow judge, for time limits)."""

    def __init__(self, seconds: float = 0.3) -> None:
        self.seconds = seconds

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        import time

        time.sleep(self.seconds)
        return RewardOutput(mean_brightness(images, prompts))


class FlakyReward(Reward):
    """``mean_brightness`` whose calls fail with a transient error at ``failure_rate`` (a flaky
    remote judge): the call policy retries them."""

    def __init__(self, failure_rate: float = 0.1) -> None:
        self.failure_rate = failure_rate

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        import random

        from rewards.base import TransientRewardError

        if random.random() < self.failure_rate:
            raise TransientRewardError("judge answered 503")
        return RewardOutput(mean_brightness(images, prompts))
