"""Timing helpers shared by the default and the GPU suite: wall clocks after the device's queued
work, per-step phase timings of a ``milr.optimize`` run, plain generation, bandwidth bound, peak
memory and throughput with per-prompt stopping."""

from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from lightning import Callback, LightningModule, Trainer
from PIL import Image

import milr
from data.prompt import Prompt
from milr.backbone import JanusBackbone
from milr.bench.reward import BenchReward
from rewards.base import Reward


def clock(device: torch.device) -> float:
    """Wall time after the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@contextlib.contextmanager
def shadowing(bb: JanusBackbone, name: str, on_call: Any):
    """Call ``on_call(*args, **kwargs)`` before every call of the backbone method ``name``, by
    shadowing the method on the instance."""
    method = getattr(bb, name)

    def counted(*args: Any, **kwargs: Any):
        on_call(*args, **kwargs)
        return method(*args, **kwargs)

    setattr(bb, name, counted)
    try:
        yield
    finally:
        delattr(bb, name)


class StepClock(Callback):
    """Per training batch (one MILR step of every running prompt): wall time, the module's phase
    timings and how often the think text was decoded; optionally a cProfile of one batch."""

    def __init__(self, backbone: JanusBackbone, profile_batch: int | None = None) -> None:
        self.backbone = backbone
        self.profile_batch = profile_batch
        self.walls: list[float] = []
        self.phases: list[dict[str, float]] = []
        self.thinks: list[int] = []
        self.profile: cProfile.Profile | None = None
        self._start = 0.0
        self._calls = 0

    def counting_think(self) -> contextlib.AbstractContextManager:
        """Count ``backbone.think`` calls."""
        return shadowing(self.backbone, "think", lambda prompts, *args, **kwargs: setattr(self, "_calls", self._calls + 1))

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if len(self.walls) == self.profile_batch:
            self.profile = cProfile.Profile()
            self.profile.enable()
        self._calls = 0
        self._start = clock(self.backbone.device)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.walls.append(clock(self.backbone.device) - self._start)
        self.phases.append(dict(pl_module.timings))
        self.thinks.append(self._calls)
        if self.profile is not None and len(self.walls) - 1 == self.profile_batch:
            self.profile.disable()


@dataclass
class ModeTiming:
    stage0_s: float
    step_s: float
    shares: dict[str, float]
    think_calls: int  # think decodes in the timed steps (the module re-decodes only a changed text prefix)
    profile: str = ""


def time_mode(
    bb: JanusBackbone, mode: str, prompts: Sequence[Prompt], steps: int, lr: float, reward: Reward, profile: bool = False
) -> ModeTiming:
    """One ``milr.optimize`` run of ``steps`` steps; a profiled extra step is left out of the mean."""
    timer = StepClock(bb, profile_batch=1 if profile else None)
    extra = int(profile)
    with timer.counting_think():
        milr.optimize(
            list(prompts), bb, BenchReward(reward), mode=mode, lr=lr, max_steps=steps + extra,
            batch_size=len(prompts), callbacks=[timer],
        )  # fmt: skip
    if len(timer.walls) != 1 + extra + steps:
        raise RuntimeError(
            f"mode {mode}: expected stage 0 + {steps + extra} steps, ran {len(timer.walls)} batches; "
            "a prompt stopped early (e.g. an empty text prefix: raise --think-tokens)"
        )
    walls, phases = timer.walls[1 + extra :], timer.phases[1 + extra :]
    step = sum(walls) / steps
    decode = sum(p.get("decode", 0.0) for p in phases) / steps
    reward = sum(p.get("reward", 0.0) for p in phases) / steps
    shares = {"decode": decode / step, "reward": reward / step, "update": max(step - decode - reward, 0.0) / step}
    profile_report = profile_text(timer.profile) if timer.profile else ""
    return ModeTiming(timer.walls[0], step, shares, sum(timer.thinks[1 + extra :]), profile_report)


def profile_text(profile: cProfile.Profile, top: int = 18) -> str:
    """The step's call tree (cumulative, milr/transformers frames) and its hottest operations."""
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    out.write("── cumulative time, milr and transformers model frames ──\n")
    stats.sort_stats("cumulative").print_stats(r"milr/|models/(llama|janus)/", top)
    out.write("── own time (operators) ──\n")
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def time_generate(bb: JanusBackbone, texts: Sequence[str], seed: int = 0) -> tuple[float, float, list[Image.Image]]:
    """transformers' own CFG image generation of ``texts`` (chat-formatted), then the VQ decode.
    Returns (generate seconds, generate + decode seconds, the images)."""
    config = bb.model.generation_config
    config.pad_token_id, config.bos_token_id = bb.pad_id, bb.bos_id  # a random model has none
    config.generation_kwargs = {**getattr(config, "generation_kwargs", {}), "boi_token_id": bb.boi_id}
    enc = bb.tokenizer([t + bb.boi_token for t in texts], return_tensors="pt", padding=True).to(bb.device)
    torch.manual_seed(seed)
    start = clock(bb.device)
    tokens = bb.model.generate(
        enc.input_ids,
        attention_mask=enc.attention_mask,
        generation_mode="image",
        do_sample=True,
        top_k=0,
        guidance_scale=bb.guidance_scale,
    )
    generated = clock(bb.device)
    images = bb.decode_images(tokens)
    return generated - start, clock(bb.device) - start, images


def compile_all_shapes(bb: JanusBackbone, image_prompts: Sequence[str]) -> None:
    """Compile the decode step before anything is timed: the batch's shape, then a shape with
    another batch size and cache length, which recompiles it with symbolic sizes (``dynamic=None``),
    so no later batch size or prompt length compiles inside a timing."""
    longer = image_prompts[0] + " detail" * 160  # past the next 128-token cache-length bucket
    for rows in (list(image_prompts), [longer] * (2 if len(image_prompts) == 1 else 1)):
        bb.sample_image(bb.image_context(rows), [torch.Generator(bb.device).manual_seed(0) for _ in rows])


def memory_bandwidth_gbs(device: torch.device, megabytes: int = 256, repeats: int = 5) -> float:
    """Measured memory bandwidth: bytes read + written per second by a large on-device copy."""
    src = torch.empty(megabytes * 2**20 // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up: page in both buffers
    start = clock(device)
    for _ in range(repeats):
        dst.copy_(src)
    seconds = (clock(device) - start) / repeats
    return 2 * src.numel() * src.element_size() / seconds / 1e9


def decode_bound(bb: JanusBackbone, seconds_batch1: float, bandwidth_gbs: float | None = None) -> dict[str, float]:
    """Image-token decode at batch 1 (one [cond; uncond] pair) against the bandwidth bound: each
    token step reads every language-model and generation-head weight once, so at best
    ``bandwidth / weight bytes`` steps per second. ``bandwidth_gbs``: the device's figure, else a
    copy is measured."""
    modules = (bb.lm, bb.model.model.generation_head, bb.model.model.generation_aligner)
    weight_bytes = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    bandwidth = memory_bandwidth_gbs(bb.device) if bandwidth_gbs is None else bandwidth_gbs
    measured = bb.num_image_tokens / seconds_batch1
    bound = bandwidth * 1e9 / weight_bytes
    return {
        "tokens_per_s_batch1": measured,
        "bandwidth_gbs": bandwidth,
        "weight_mb": weight_bytes / 2**20,
        "bound_tokens_per_s": bound,
        "fraction_of_bound": measured / bound,
    }


def prompts_per_hour(bb: JanusBackbone, prompts: Sequence[Prompt], batch: int, steps: int, reward: Reward) -> float:
    """Mode ``both`` with per-prompt early stopping (``BenchReward(reward, pass_after=steps)``)."""
    start = clock(bb.device)
    scheduled = BenchReward(reward, pass_after=steps)
    results = milr.optimize(list(prompts), bb, scheduled, mode="both", max_steps=steps, reward_threshold=0.5, batch_size=batch)
    seconds = clock(bb.device) - start
    expected = [1 + i % steps for i in range(len(prompts))]
    if [r.steps for r in results] != expected:
        raise RuntimeError(f"batch {batch}: prompts took {[r.steps for r in results]} steps, expected {expected}")
    return len(prompts) * 3600.0 / seconds


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: max allocated by torch. CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux
