"""MILR's options, defined once: names, defaults and the checks that refuse values MILR cannot
run with, naming the option. ``MILRModule`` (whose flat signature LightningCLI reads, a test keeps
it equal to these), the runner's early check and ``milr.optimize`` all go through ``MILROptions``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, Mapping

import torch

from milr.methods import METHODS, Method
from milr.objective import Estimator
from milr.prompts import PromptFormat, check_prompt_format
from milr.schedule import StepOrder, StepSchedule
from rewards.base import CallPolicy

Mode = Literal["text", "image", "both"]
LATENT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def _fail(name: str, problem: str) -> None:
    raise ValueError(f"{name} {problem}")


@dataclass(frozen=True, kw_only=True)
class RewardCallOptions:
    """How every reward and monitor call is made (``rewards.base.CallPolicy``) and what a call
    that still fails does: ``stop`` the run or ``skip`` (fail its prompts, carry on)."""

    reward_timeout: float | None = None
    reward_retries: int = 2
    reward_backoff: float = 1.0
    on_reward_failure: Literal["stop", "skip"] = "stop"

    def __post_init__(self) -> None:
        self._check_reward_calls()

    def _check_reward_calls(self) -> None:
        if self.reward_timeout is not None and not self.reward_timeout > 0:
            _fail("reward_timeout", f"must be > 0 seconds or null (no limit), got {self.reward_timeout}")
        if self.reward_retries < 0:
            _fail("reward_retries", f"must be >= 0 (repeats of a reward call that failed transiently), got {self.reward_retries}")
        if not self.reward_backoff >= 0:
            _fail("reward_backoff", f"must be >= 0 seconds, got {self.reward_backoff}")
        if self.on_reward_failure not in ("stop", "skip"):
            _fail("on_reward_failure", f"must be 'stop' (end the run) or 'skip' (mark the prompt failed, carry on), got {self.on_reward_failure!r}")

    @property
    def call_policy(self) -> CallPolicy:
        return CallPolicy(timeout=self.reward_timeout, retries=self.reward_retries, backoff=self.reward_backoff)

    @property
    def skips_failures(self) -> bool:
        """A reward call that still fails fails its prompts (``skip``) instead of the run."""
        return self.on_reward_failure == "skip"


@dataclass(frozen=True, kw_only=True)
class MILROptions(RewardCallOptions):
    """Every option of a MILR run but the backbone, the reward and the monitors (their meaning:
    ``MILRModule``'s docstring). Constructing one checks it."""

    mode: Mode = "both"
    text_ratio: float = 0.2
    image_ratio: float = 0.02
    lr: float = 0.03
    optimizer: Literal["adam", "sgd"] = "adam"
    max_steps: int = 20
    reward_threshold: float | None = None
    estimator: Estimator = "reference"
    samples_per_step: int = 1
    seed: int = 0
    select: Literal["best", "last"] = "best"
    batch_size: int = 1
    prompt_format: PromptFormat = "janus"
    image_mode_think: bool = True
    step_order: StepOrder = "joint"
    phase_steps: int | None = None
    latent_dtype: Literal["float32", "bfloat16"] = "float32"
    image_loss_tokens: Literal["sampled", "argmax"] = "sampled"
    method: Method = "milr"
    best_of_n: int | None = None
    best_of_n_think: Literal["greedy", "sample"] = "greedy"
    monitor_every_step: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("text", "image", "both"):
            _fail("mode", f"must be 'text', 'image' or 'both', got {self.mode!r}")
        for name, ratio in (("text_ratio", self.text_ratio), ("image_ratio", self.image_ratio)):
            if not 0.0 <= ratio <= 1.0:
                _fail(name, f"must be in [0, 1] (the share of tokens whose latents are optimised; paper: 0.2 text, 0.02 image), got {ratio}")
        if not self.lr >= 0:
            _fail("lr", f"must be >= 0 (paper: 0.03; 0 = re-sampling without updates), got {self.lr}")
        if self.max_steps < 0:
            _fail("max_steps", f"must be >= 0 (0 = the initial generation only), got {self.max_steps}")
        if self.reward_threshold is not None and not 0.0 <= self.reward_threshold <= 1.0:
            _fail("reward_threshold", f"must be in [0, 1] (rewards are in [0, 1]) or null, got {self.reward_threshold}")
        if self.estimator not in ("reference", "rloo"):
            _fail("estimator", f"must be 'reference' or 'rloo', got {self.estimator!r}")
        if self.samples_per_step < 1:
            _fail("samples_per_step", f"must be >= 1, got {self.samples_per_step}")
        if self.estimator == "rloo" and self.samples_per_step < 2:
            _fail("samples_per_step", f"must be >= 2 with estimator 'rloo' (leave-one-out baseline), got {self.samples_per_step}")
        if self.batch_size < 1:
            _fail("batch_size", f"must be >= 1, got {self.batch_size}")
        if self.method not in METHODS:
            _fail("method", f"must be one of {list(METHODS)}, got {self.method!r}")
        if self.best_of_n is not None and self.method != "best_of_n":
            _fail("best_of_n", f"is N of method 'best_of_n' only (method is {self.method!r}): leave it null")
        if self.best_of_n is not None and self.best_of_n < 1:
            _fail("best_of_n", f"must be >= 1 images per prompt (null: MILR's reward-call budget), got {self.best_of_n}")
        if self.best_of_n_think not in ("greedy", "sample"):
            _fail("best_of_n_think", f"must be 'greedy' (keep stage 0's think text) or 'sample' (a fresh one per image), got {self.best_of_n_think!r}")
        if self.best_of_n_think == "sample" and self.method != "best_of_n":
            _fail("best_of_n_think", f"is for method 'best_of_n' only (method is {self.method!r}): leave it 'greedy'")
        if self.latent_dtype not in LATENT_DTYPES:
            _fail("latent_dtype", f"must be one of {list(LATENT_DTYPES)}, got {self.latent_dtype!r}")
        if self.image_loss_tokens not in ("sampled", "argmax"):
            _fail("image_loss_tokens", f"must be 'sampled' or 'argmax', got {self.image_loss_tokens!r}")
        if self.image_loss_tokens == "argmax" and self.estimator == "rloo":
            _fail("image_loss_tokens", "'argmax' gives every rloo sample the same image term (no image update): use 'sampled'")
        self._check_reward_calls()
        check_prompt_format(self.prompt_format)
        self.schedule()

    @property
    def groups(self) -> tuple[str, ...]:
        """The latent groups the mode optimises: ``text``, ``image`` or both."""
        return tuple(g for g, used in (("text", self.mode != "image"), ("image", self.mode != "text")) if used)

    def schedule(self) -> StepSchedule:
        """Which latents move at each step (``milr.schedule``); raises on an ordering the mode cannot run."""
        return StepSchedule(self.step_order, self.groups, self.max_steps, self.phase_steps)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> MILROptions:
        """The options among ``values`` (e.g. a module's ``hparams``); other keys are not options."""
        return cls(**{name: values[name] for name in cls.names() if name in values})


def check_options(prefix: str = "", **options: Any) -> MILROptions:
    """``MILROptions(**options)``, its error naming the option with ``prefix`` (``model.text_ratio``)."""
    try:
        return MILROptions(**options)
    except ValueError as err:
        raise ValueError(f"{prefix}{err}") from None
