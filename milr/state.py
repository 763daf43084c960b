"""Per-prompt bookkeeping: what a prompt has produced so far, and what a finished prompt returns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from PIL import Image

from data.prompt import Prompt

Answer = tuple[float, dict[str, Any]]  # one image's reward and details

class StopReason(str, Enum):
    """Why a prompt left the batch (``str`` so it serialises as its value)."""

    THRESHOLD = "threshold"  # reward exceeded the threshold
    MAX_STEPS = "max_steps"  # step budget used up
    EMPTY_PREFIX = "empty_prefix"  # the ratio floors to 0 latent tokens: nothing to optimise
    NONFINITE = "nonfinite"  # loss or latent became NaN/inf; best image so far is kept
    CALLBACK = "callback"  # a user callback stopped it (custom rule)
    FIT_END = "fit_end"  # the fit ended (e.g. stock EarlyStopping) while it was running
    FAILED = "failed"  # its reward call failed (on_reward_failure: skip): no result, a re-run retries it


@dataclass
class Sample:
    """One decoded candidate of a step: the prefix tokens it used and its reward."""

    text_prefix: torch.Tensor  # [Lt] token ids (empty when text is not optimised)
    image_prefix: torch.Tensor  # [Lv] token ids (empty when the image is not optimised)
    text: str
    image: Image.Image
    reward: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepRecord:
    """One line of ``trace/<repeat>.jsonl``. ``reward`` is the best of the step's samples (what stopping
    and selection use), ``mean_reward`` the mean over the samples the update uses,
    ``sample_rewards`` every reward scored in the step, ``reward_calls`` the prompt's reward
    calls up to and including this step, and ``monitors`` each monitor's score of the step's
    best image (with ``monitor_every_step``)."""

    step: int
    reward: float
    text: str
    seconds: float
    mean_reward: float
    details: dict[str, Any] = field(default_factory=dict)
    sample_rewards: list[float] = field(default_factory=list)
    reward_calls: int = 0
    monitors: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        line = {
            "step": self.step,
            "reward": self.reward,
            "mean_reward": self.mean_reward,
            "sample_rewards": self.sample_rewards,
            "reward_calls": self.reward_calls,
            "text": self.text,
            "seconds": round(self.seconds, 4),
            "details": self.details,
        }
        return {**line, "monitors": self.monitors} if self.monitors else line


@dataclass
class PromptState:
    """A prompt occupying a latent slot. ``samples`` are the latest step's candidates; ``fresh``
    until their loss has been taken (then the latents have moved on and need a new decode).
    ``reward_calls`` / ``decoded_images`` count every image scored / decoded for this prompt."""

    prompt: Prompt
    slot: int
    generator: torch.Generator
    think_text: str
    initial_image: Image.Image
    samples: list[Sample] = field(default_factory=list)
    fresh: bool = False
    history: list[StepRecord] = field(default_factory=list)
    best: Sample | None = None
    best_step: int = 0
    last: Sample | None = None
    reward_calls: int = 0
    decoded_images: int = 0
    initial_monitors: dict[str, float] = field(default_factory=dict)
    stop_reason: StopReason | None = None
    started: float = field(default_factory=time.perf_counter)
    step_started: float = field(default_factory=time.perf_counter)

    @property
    def step(self) -> int:
        """Index of the most recent scored step (0 = the initial generation)."""
        return len(self.history) - 1

    @property
    def rewards(self) -> list[float]:
        return [r.reward for r in self.history]

    @property
    def reward(self) -> float:
        return self.history[-1].reward

    def record(self, samples: list[Sample], update: list[Sample] | None = None) -> None:
        """Log one step: every scored sample counts for stopping and selection (the best), the
        ``update`` samples (default: all) are the ones the next loss uses."""
        update = samples if update is None else update
        chosen = max(samples, key=lambda s: s.reward)
        now = time.perf_counter()
        mean = sum(s.reward for s in update) / len(update)
        rewards = [s.reward for s in samples]
        self.reward_calls += len(samples)
        self.history.append(
            StepRecord(len(self.history), chosen.reward, chosen.text, now - self.step_started, mean, chosen.details, rewards, self.reward_calls)
        )
        self.step_started = now
        self.samples, self.fresh = update, True
        self.last = chosen
        if self.best is None or chosen.reward > self.best.reward:
            self.best, self.best_step = chosen, self.step

    def selected(self, best: bool) -> tuple[Sample, int]:
        """The sample a result returns and its step: the ``best`` one, else the last one."""
        chosen, step = (self.best, self.best_step) if best else (self.last, self.step)
        assert chosen is not None and self.best is not None
        return chosen, step

    def result(self, chosen: Sample, step: int, method: str) -> MILRResult:
        """What the prompt returns, with ``chosen`` (from ``step``) as its image; its monitors
        are scored after its clock stops."""
        assert self.stop_reason is not None and self.best is not None
        return MILRResult(
            prompt=self.prompt,
            image=chosen.image,
            text=chosen.text,
            rewards=self.rewards,
            final_reward=self.reward,
            selected_reward=chosen.reward,
            best_reward=self.best.reward,
            steps=self.step,
            stop_reason=self.stop_reason,
            initial_image=self.initial_image,
            history=self.history,
            seconds=time.perf_counter() - self.started,
            method=method,
            initial_text=self.think_text,
            selected_step=step,
            reward_calls=self.reward_calls,
            decoded_images=self.decoded_images,
        )


@dataclass
class FailedPrompt:
    """A prompt whose reward call failed under ``on_reward_failure: skip``: a reason, not a result."""

    prompt: Prompt
    reason: str  # the reward's name and error
    step: int  # the step whose reward call failed (0 = the initial generation)


@dataclass
class MILRResult:
    """What ``milr.optimize`` returns per prompt."""

    prompt: Prompt
    image: Image.Image
    text: str
    rewards: list[float]  # one per step; index 0 = the initial generation
    final_reward: float  # reward of the last step (a prompt stopped by its threshold: the one over it)
    selected_reward: float  # reward of the returned image (= best_reward with select="best")
    best_reward: float
    steps: int  # optimisation steps taken
    stop_reason: StopReason
    initial_image: Image.Image
    history: list[StepRecord]
    seconds: float
    method: str = "milr"
    initial_text: str = ""  # the stage-0 think text (``text`` is the selected image's)
    selected_step: int = 0  # the step the returned image comes from
    reward_calls: int = 0  # reward evaluations charged to this prompt (every image scored)
    decoded_images: int = 0
    monitors: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> {"initial", "selected"}

    @property
    def initial_reward(self) -> float:
        """Reward of ``initial_image``, the plain stage-0 sample (with ``rloo`` step 0 also scores
        K candidates, and ``rewards[0]`` is the best of them all)."""
        return self.history[0].sample_rewards[0]
