"""The reward protocol every reward model implements, and helpers to call any of them.

A reward maps decoded images and their prompts to scores in [0, 1] (higher is better).
Anything callable as ``reward(images, prompts) -> Tensor[B]`` works; subclassing ``Reward``
adds per-image details for logs and a ``setup`` hook to learn the backbone's device/dtype.
``score`` is the boundary every reward call goes through: it applies the caller's
``CallPolicy`` (per-call timeout, bounded retries of ``TransientRewardError``) and validates
the answer (scores and details) so a bad answer is an error naming the reward and the prompt.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, TypeVar, runtime_checkable

import torch
from PIL import Image

from data.prompt import Prompt

logger = logging.getLogger(__name__)
T = TypeVar("T")


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


class TransientRewardError(RuntimeError):
    """A failure that may pass when the call is repeated: a timeout, a dropped connection, HTTP 429
    or 5xx of a remote judge. ``score`` retries these (bounded, with backoff); other errors never."""


class RewardTimeout(TransientRewardError):
    """A reward call ran past its ``CallPolicy.timeout``."""


@dataclass(frozen=True)
class CallPolicy:
    """How ``score`` calls a reward: at most ``timeout`` seconds per call (None: no limit, called
    inline), then up to ``retries`` repeats of a call that raised ``TransientRewardError``, repeat
    ``n`` after ``min(backoff · 2**(n-1), backoff_max)`` seconds."""

    timeout: float | None = None
    retries: int = 0
    backoff: float = 1.0
    backoff_max: float = 60.0


def retry(
    call: Callable[[], T],
    *,
    retries: int,
    backoff: float,
    backoff_max: float = 60.0,
    on_retry: Callable[[int, Exception, float], None] | None = None,
) -> T:
    """``call()``, repeated up to ``retries`` times while it raises ``TransientRewardError``; before
    repeat ``n`` (1-based) ``on_retry(n, error, delay)`` runs and ``min(backoff · 2**(n-1), backoff_max)``
    seconds pass. Any other error, or the last transient one, propagates."""
    for attempt in itertools.count():
        try:
            return call()
        except TransientRewardError as err:
            if attempt >= retries:
                raise
            delay = min(backoff * 2**attempt, backoff_max)
            if on_retry is not None:
                on_retry(attempt + 1, err, delay)
            time.sleep(delay)


def _thread_state() -> Callable[[], contextlib.ExitStack]:
    """The caller's thread-local torch state (grad and inference mode, autocast, CUDA device),
    to re-enter in a worker thread so a reward computes there exactly as it would inline."""
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    autocast = [(d, torch.get_autocast_dtype(d)) for d in ("cpu", "cuda") if torch.is_autocast_enabled(d)]
    device = torch.cuda.current_device() if torch.cuda.is_initialized() else None

    def enter() -> contextlib.ExitStack:
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode() if inference else torch.set_grad_enabled(grad))
        for device_type, dtype in autocast:
            stack.enter_context(torch.autocast(device_type, dtype=dtype))
        if device is not None:
            stack.enter_context(torch.cuda.device(device))
        return stack

    return enter


def call_with_timeout(call: Callable[[], T], timeout: float | None, what: str) -> T:
    """``call()`` in a daemon worker thread named ``what``, waited for at most ``timeout`` seconds
    (None: inline).

    Python cannot kill a thread: a call past its timeout is abandoned, not stopped (it keeps its
    thread, and the reward's memory, until it returns by itself; a retry may run next to it). Its
    answer can never become a score: it lands in a box only this attempt reads, and this attempt
    has already raised ``RewardTimeout``.
    """
    if timeout is None:
        return call()
    box: dict[str, Any] = {}
    enter = _thread_state()

    def work() -> None:
        try:
            with enter():
                box["value"] = call()
        except BaseException as err:  # handed to the waiting caller, which re-raises it
            box["error"] = err

    worker = threading.Thread(target=work, name=what, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise RewardTimeout(f"no answer within {timeout:g} s (the call's thread is abandoned)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def reward_name(reward: RewardFn | Reward) -> str:
    return getattr(reward, "name", getattr(reward, "__name__", type(reward).__name__))


def check_details(name: str, details: list[Any], images: int, prompts: list[Prompt]) -> list[dict[str, Any]]:
    """One JSON-serialisable dict per image (``{}`` each when the reward gave none): the details
    are written to ``trace/<repeat>.jsonl`` once the prompt is done, so a bad one must fail now, not then."""
    if not details:
        return [{} for _ in range(images)]
    if len(details) != images:
        raise ValueError(f"reward {name!r} returned {len(details)} details for {images} images")
    for i, (detail, prompt) in enumerate(zip(details, prompts)):
        where = f"reward {name!r}, image {i} (prompt {prompt.index})"
        if not isinstance(detail, dict):
            raise ValueError(f"{where}: details must be a dict, got {type(detail).__name__}")
        for key, value in detail.items():
            try:
                json.dumps({key: value})
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"{where}: details key {key!r} is not JSON-serialisable ({type(value).__name__}: {err}); "
                    "return plain numbers, strings, lists and dicts (e.g. float(x), x.tolist())"
                ) from None
    return details


def score(
    reward: RewardFn | Reward,
    images: list[Image.Image],
    prompts: Sequence[Prompt],
    policy: CallPolicy = CallPolicy(),
    on_retry: Callable[[int, Exception, float], None] | None = None,
) -> RewardOutput:
    """Call any reward under ``policy`` and validate its answer: shape ``[B]``, finite, inside
    [0, 1], JSON-serialisable details.

    A reward that returns garbage is an error, never a score: MILR would otherwise optimise
    towards the garbage. ``on_retry(n, error, delay)`` runs before each repeat of the call.
    """
    prompts = list(prompts)
    name = reward_name(reward)
    evaluate = reward.evaluate if isinstance(reward, Reward) else lambda i, p: RewardOutput(scores=reward(i, p))

    def log_retry(n: int, err: Exception, delay: float) -> None:
        logger.warning("reward %r: %s; retry %d/%d in %.2fs", name, err, n, policy.retries, delay)
        if on_retry is not None:
            on_retry(n, err, delay)

    out = retry(
        lambda: call_with_timeout(lambda: evaluate(images, prompts), policy.timeout, f"reward {name!r}"),
        retries=policy.retries, backoff=policy.backoff, backoff_max=policy.backoff_max, on_retry=log_retry,
    )
    scores = torch.as_tensor(out.scores, dtype=torch.float32).detach().cpu().reshape(-1)
    if scores.numel() != len(images):
        raise ValueError(f"reward {name!r} returned {scores.numel()} scores for {len(images)} images")
    if not torch.isfinite(scores).all() or (scores < 0).any() or (scores > 1).any():
        raise ValueError(f"reward {name!r} returned scores outside [0, 1] or non-finite: {scores.tolist()}")
    return RewardOutput(scores=scores, details=check_details(name, out.details, len(images), prompts))


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
