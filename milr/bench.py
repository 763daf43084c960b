"""``python -m milr.bench``: what a MILR step costs next to a plain Janus-Pro image generation.

Measured side by side in one process, on a random model of the chosen shape (``milr.model_sizes``):

- ``generate_s``: one plain generation of a batch: transformers' own
  ``model.generate(generation_mode="image", do_sample=True, top_k=0, guidance_scale=5)`` on the
  stage-0 image prompts, plus the VQ decode to pixels (MILR's decode phase ends in pixels too).
- ``step_s[mode]``: one MILR step of a batch in each mode, from ``milr.optimize`` with
  ``max_steps=S`` and no threshold: the mean wall time of the training batches after stage 0
  (batch k = decode from the moved latents, reward, loss + backward + Adam; batch S has no
  update because every prompt stops there). Stage 0 (think + first image) is ``stage0_s``.
- ``step_share[mode]``: decode / reward / update share of a step; decode and reward are the
  module's own ``timings``, update is the rest (loss, backward, optimiser, Lightning).
  ``think_calls[mode]``: think decodes in the timed steps; the module re-decodes the think text
  only when the argmax of the text latents changes, so a ``both`` step often costs an ``image`` one.
- ``think_tokens_per_s``: greedy think text of one prompt, ``N`` new tokens, with the KV cache
  and without it (the reference re-runs the whole sequence per token).
- ``decode``: image-token steps per second at batch 1 against the bandwidth bound (measured copy
  bandwidth ÷ bytes of the weights every step reads) and the fraction of the bound reached.
- ``prompts_per_hour``: mode ``both`` over a prompt list at batch 1 and at batch B with per-prompt
  early stopping: prompt ``i`` reaches the threshold at step ``1 + i % S``, so both runs do the
  same steps and differ only in how the steps are batched.
- ``prompt_reuse``: the same run at batch B twice, side by side: with the prompt KV kept per
  prompt across steps (``milr.prompt_cache``) and with the earlier reuse (``reuse_prompts=False``:
  think prompt prefilled at every think decode, every image prompt whenever one changed): mean
  seconds of a step after stage 0 and the prompt rows each prefilled.

The reward is a mean-brightness read of the image unless ``--reward-config`` names a reward YAML
(any of ``configs/rewards/``; ``python -m rewards.random_weights geneval --out DIR`` writes one for
the GenEval reward with random weights at its real shapes, ``--prompts-file`` then gives prompts
with GenEval metadata): its models load before the timings, its time is the step's ``reward``
share, and ``peak_mem_mb`` includes it (the 24 GB check of 7B + GenEval). The throughput runs
call it too, then override its scores with the stop schedule (``BenchReward``). On CPU the
bench runs on one thread unless ``--threads`` says otherwise. ``--profile`` adds a cProfile of
one extra ``both`` step (excluded from the timings) so a missed target can be explained.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import logging
import os
import pstats
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from PIL import Image

import milr
from data.formats import load_prompts
from data.prompt import Prompt
from milr.backbone import JanusBackbone, resolve_device
from milr.prompts import image_prompt, think_text
from milr.model_sizes import SHAPES, Shape, random_backbone
from rewards.base import Reward, RewardOutput, from_config, score

MODES = ("text", "image", "both")

PROMPTS = [
    "a photo of a red apple and a blue cup",
    "two black dogs playing with an orange ball",
    "a green bird sitting left of a yellow banana",
    "a purple flower in a pink vase next to a gray stone",
    "a white cat on a brown wooden table",
    "three blue cups on a table",
    "a yellow taxi under the white sky",
    "an orange ball right of a black dog",
]

#: The performance targets: report key → (comparison, limit, where the target is meant to hold).
TARGETS: dict[str, tuple[str, float, str]] = {
    "step_over_generate": ("<=", 1.15, "any model, same batch"),  # a `both` step / a plain generation
    "image_over_both": ("<=", 0.8, "any model"),  # an `image` step / a `both` step
    "text_cache_speedup": (">=", 5.0, "small"),  # think tokens/s cached / uncached
    "batch_speedup": (">=", 5.0, "GPU, batch 8"),  # prompts/hour at batch B / at batch 1
    "peak_mem_mb": ("<=", 24 * 1024.0, "7b + GenEval reward, CUDA"),  # fits a 24 GB GPU
    "rss_mb_per_1000": ("<=", 5.0, "tiny, CPU"),  # a long run's host memory stays flat
}


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


def think_speed(bb: JanusBackbone, prompt: str, tokens: int) -> dict[str, float]:
    """Think-text tokens per second for one prompt, with and without the KV cache (same tokens)."""
    bb.think([prompt], max_new_tokens=2)  # warm-up
    speed = {}
    for name, use_cache in (("cached", True), ("uncached", False)):
        start = clock(bb.device)
        out = bb.think([prompt], max_new_tokens=tokens, use_cache=use_cache)
        seconds = clock(bb.device) - start
        made = len(out.ids[0]) + (len(out.ids[0]) < tokens)  # the step that produced EOS counts
        speed[name] = made / seconds
    return speed


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


def prompt_reuse(bb: JanusBackbone, prompts: Sequence[Prompt], batch: int, steps: int, lr: float, reward: Reward) -> dict[str, Any]:
    """Mode ``both`` over ``prompts`` with per-prompt stopping and refill (the throughput schedule),
    once with the earlier prompt reuse (``reuse_prompts=False``: the think prompt prefilled at every
    think decode, image prompts whenever one changed) and once with per-prompt caches: mean seconds
    of the steps after stage 0 and the prompt rows each prefilled."""
    out: dict[str, Any] = {}
    for name, reuse in (("before", False), ("after", True)):
        timer, rows = StepClock(bb), {"think_rows": 0, "image_rows": 0}
        bb.reuse_prompts = reuse
        try:
            with contextlib.ExitStack() as stack:
                for method in rows:
                    stack.enter_context(shadowing(bb, method, lambda texts, *a, _m=method: rows.__setitem__(_m, rows[_m] + len(texts))))
                milr.optimize(
                    list(prompts), bb, BenchReward(reward, pass_after=steps), mode="both", lr=lr, max_steps=steps,
                    reward_threshold=0.5, batch_size=batch, callbacks=[timer],
                )  # fmt: skip
        finally:
            bb.reuse_prompts = True
        out[name] = {"step_s": sum(timer.walls[1:]) / max(len(timer.walls) - 1, 1), "steps": len(timer.walls) - 1, **rows}
    out["after_over_before"] = out["after"]["step_s"] / out["before"]["step_s"]
    return out


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: max allocated by torch. CPU: the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux


def resident_mb() -> float | None:
    """The process's current resident set (Linux: /proc/self/statm); None elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def rss_growth(bb: JanusBackbone, prompts: Sequence[Prompt], batch: int, reward: Reward, warmup: int = 100) -> dict[str, Any]:
    """Host memory over a long run: ``milr.optimize_stream`` over ``prompts`` (one step each, results
    dropped as they come, as a writer does), the resident set after ``warmup`` prompts and at the end,
    as MB per 1000 prompts. Growth here would be something a run keeps per finished prompt."""
    readings: dict[int, float | None] = {}
    for done, _ in enumerate(milr.optimize_stream(prompts, bb, reward, mode="image", image_ratio=0.1, max_steps=1, batch_size=batch), 1):
        if done in (warmup, len(prompts)):
            gc.collect()
            readings[done] = resident_mb()
    before, after = readings.get(warmup), readings.get(len(prompts))
    measured = len(prompts) - warmup
    per_1000 = (after - before) * 1000 / measured if before is not None and after is not None and measured > 0 else None
    return {"prompts": measured, "rss_before_mb": before, "rss_after_mb": after, "mb_per_1000_prompts": per_1000}


def check_targets(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target the report has a value for: the value, the target, whether it is met, and where
    the target is meant to hold (a CPU run reports GPU targets too, for the record)."""
    checks = {}
    for key, (op, limit, where) in TARGETS.items():
        value = report.get(key)
        if value is not None:
            met = value <= limit if op == "<=" else value >= limit
            checks[key] = {"value": value, "target": f"{op} {limit}", "met": met, "where": where}
    return checks


@dataclass
class BenchConfig:
    """What to measure; ``None`` takes the shape's default (``milr.model_sizes.SHAPES``)."""

    model: str = "tiny"
    batch: int | None = None
    steps: int | None = None
    think_tokens: int | None = None
    prompts: int | None = None  # prompts in the throughput runs
    device: str = "cpu"
    dtype: str = "auto"
    threads: int = 1  # CPU only; 0 keeps torch's default
    compile: bool = False
    static_cache: bool = False
    lr: float = 0.03
    profile: bool = False
    seed: int = 0
    reward_config: str | None = None  # a reward YAML (configs/rewards/*.yaml); None: Brightness
    prompts_file: str | None = None  # None: the built-in PROMPTS
    rss_prompts: int = 1000  # prompts of the host-memory run after 100 warm-up ones (0: skip it)


def _given(value: int | None, fallback: int) -> int:
    return fallback if value is None else value


def bench_prompts(path: str | None, count: int) -> list[Prompt]:
    """``count`` prompts with indices 0..count-1: from a prompt file (any ``data`` format, e.g.
    GenEval's, whose metadata its reward needs), else from ``PROMPTS``, cycling when short."""
    source = load_prompts(path) if path else [Prompt(text, i, {"prompt": text}) for i, text in enumerate(PROMPTS)]
    return [Prompt(source[i % len(source)].text, i, source[i % len(source)].metadata) for i in range(count)]


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    """Run every measurement and return the report (what ``--json`` prints)."""
    shape: Shape = SHAPES[cfg.model]
    batch, steps = _given(cfg.batch, shape.batch), _given(cfg.steps, shape.steps)
    think_tokens, n_prompts = _given(cfg.think_tokens, shape.think_tokens), _given(cfg.prompts, shape.prompts)
    if min(batch, steps, think_tokens, n_prompts) < 1:
        raise ValueError("batch, steps, think tokens and prompts must be >= 1")
    threads = torch.get_num_threads()
    if cfg.threads and resolve_device(cfg.device).type == "cpu":
        torch.set_num_threads(cfg.threads)
    began = time.perf_counter()
    try:
        bb = random_backbone(
            shape, device=cfg.device, dtype=cfg.dtype, seed=cfg.seed,
            max_think_tokens=think_tokens, compile=cfg.compile, static_cache=cfg.static_cache,
        )  # fmt: skip
        if bb.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(bb.device)
        prompts = bench_prompts(cfg.prompts_file, max(batch, n_prompts))
        reward = from_config(cfg.reward_config) if cfg.reward_config else Brightness()
        speed = think_speed(bb, prompts[0].text, think_tokens)
        think = bb.think([p.text for p in prompts[:batch]])
        image_prompts = [image_prompt(p.text, think_text(t)) for p, t in zip(prompts[:batch], think.texts)]
        if bb.device.type == "cuda":
            time_generate(bb, image_prompts, cfg.seed)  # warm-up: kernels, allocator
        generate_tokens_s, generate_s, images = time_generate(bb, image_prompts, cfg.seed)
        if cfg.compile:
            compile_all_shapes(bb, image_prompts)
        reward.setup(device=bb.device, dtype=bb.dtype, backbone=bb)
        score(reward, images, prompts[:batch])  # warm-up: a reward loads its models on first use
        batch1_s = generate_tokens_s if batch == 1 else time_generate(bb, image_prompts[:1], cfg.seed)[0]
        modes = {m: time_mode(bb, m, prompts[:batch], steps, cfg.lr, reward, profile=cfg.profile and m == "both") for m in MODES}
        throughput = {b: prompts_per_hour(bb, prompts[:n_prompts], b, steps, reward) for b in dict.fromkeys((1, batch))}
        reuse = prompt_reuse(bb, prompts[:n_prompts], batch, steps, cfg.lr, reward)
        memory = rss_growth(bb, bench_prompts(cfg.prompts_file, cfg.rss_prompts + 100), batch, reward) if cfg.rss_prompts else None
        report: dict[str, Any] = {
            "device": str(bb.device),
            "device_name": torch.cuda.get_device_name(bb.device) if bb.device.type == "cuda" else "cpu",
            "model": cfg.model,
            "reward": reward.name,
            "prompts_file": cfg.prompts_file,
            "dtype": str(bb.dtype).removeprefix("torch."),
            "params_m": round(sum(p.numel() for p in bb.model.parameters()) / 1e6, 2),
            "image_tokens": bb.num_image_tokens,
            "batch": batch,
            "steps": steps,
            "think_tokens": think_tokens,
            "threads": torch.get_num_threads() if bb.device.type == "cpu" else None,
            "compile": cfg.compile,
            "static_cache": bb.static_cache,
            "generate_s": generate_s,
            "generate_tokens_s": generate_tokens_s,
            "stage0_s": {m: t.stage0_s for m, t in modes.items()},
            "step_s": {m: t.step_s for m, t in modes.items()},
            "step_share": {m: t.shares for m, t in modes.items()},
            "think_calls": {m: t.think_calls for m, t in modes.items()},
            "step_over_generate": modes["both"].step_s / generate_s,
            "image_over_both": modes["image"].step_s / modes["both"].step_s,
            "think_tokens_per_s": speed,
            "text_cache_speedup": speed["cached"] / speed["uncached"],
            "prompts_per_hour": {str(b): v for b, v in throughput.items()},
            "throughput_prompts": n_prompts,
            "batch_speedup": throughput[batch] / throughput[1] if batch > 1 else None,
            "prompt_reuse": reuse,
            "peak_mem_mb": peak_memory_mb(bb.device),
            "host_memory": memory,
            "rss_mb_per_1000": memory["mb_per_1000_prompts"] if memory else None,
            "decode": decode_bound(bb, batch1_s),
        }
        report["targets"] = check_targets(report)
        report["bench_s"] = time.perf_counter() - began
        if cfg.profile:
            report["profile"] = modes["both"].profile
        return report
    finally:
        torch.set_num_threads(threads)


def rounded(value: Any) -> Any:
    """Floats to 4 significant digits, recursively: timings are not more precise than that."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def render(report: dict[str, Any]) -> None:
    """The report as rich tables on stdout."""
    from rich.console import Console
    from rich.table import Table

    gen = report["generate_s"]
    steps = Table(
        title=f"milr bench · {report['model']} ({report['params_m']}M params, {report['image_tokens']} image tokens)"
        f" · {report['device_name']} {report['dtype']} · batch {report['batch']} · reward {report['reward']}"
    )
    for col in ("", "seconds", "× gen", "decode", "reward", "update", "thinks"):
        steps.add_column(col, justify="left" if not col else "right")
    steps.add_row("plain generate + VQ", f"{gen:.3f}", "1.00", "", "", "", "")
    for mode in MODES:
        s, share = report["step_s"][mode], report["step_share"][mode]
        shares = (f"{share[k]:.0%}" for k in ("decode", "reward", "update"))
        steps.add_row(f"MILR step · {mode}", f"{s:.3f}", f"{s / gen:.2f}", *shares, str(report["think_calls"][mode]))
    for mode in MODES:
        s0 = report["stage0_s"][mode]
        steps.add_row(f"stage 0 · {mode}", f"{s0:.3f}", f"{s0 / gen:.2f}", "", "", "", "")
    other = Table(title="throughput and memory")
    other.add_column("")
    other.add_column("value", justify="right")
    speed = report["think_tokens_per_s"]
    other.add_row(f"think tokens/s, KV cache ({report['think_tokens']} new)", f"{speed['cached']:.1f}")
    other.add_row("think tokens/s, no cache", f"{speed['uncached']:.1f}")
    for b, v in report["prompts_per_hour"].items():
        other.add_row(f"prompts/hour, batch {b} ({report['throughput_prompts']} prompts)", f"{v:.0f}")
    reuse = report["prompt_reuse"]
    for name in ("before", "after"):
        r = reuse[name]
        other.add_row(
            f"`both` step with refill, prompt KV {'kept per prompt' if name == 'after' else 'earlier reuse'} (prefilled think / image rows)",
            f"{r['step_s']:.3f} s ({r['think_rows']} / {r['image_rows']})",
        )
    other.add_row("  per-prompt ÷ earlier", f"{reuse['after_over_before']:.2f}")
    other.add_row("peak memory (MB)", f"{report['peak_mem_mb']:.0f}")
    if (mem := report["host_memory"]) and mem["mb_per_1000_prompts"] is not None:
        other.add_row(f"host RSS growth over {mem['prompts']} prompts (MB per 1000 prompts)", f"{mem['mb_per_1000_prompts']:.2f}")
    dec = report["decode"]
    other.add_row(
        f"image tokens/s at batch 1 vs bound ({dec['weight_mb']:.0f} MB weights at {dec['bandwidth_gbs']:.1f} GB/s)",
        f"{dec['tokens_per_s_batch1']:.1f} / {dec['bound_tokens_per_s']:.1f} = {dec['fraction_of_bound']:.0%}",
    )
    targets = Table(title="targets")
    for col in ("ratio", "value", "target", "met", "meant for"):
        targets.add_column(col)
    for key, t in report["targets"].items():
        targets.add_row(key, f"{t['value']:.3f}", t["target"], "yes" if t["met"] else "[red]no[/red]", t["where"])
    console = Console()
    for table in (steps, other, targets):
        console.print(table)


def parse_args(argv: Sequence[str] | None = None) -> tuple[BenchConfig, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m milr.bench", description="What a MILR step costs next to a plain Janus-Pro image generation."
    )
    parser.add_argument("--model", choices=sorted(SHAPES), default="tiny", help="model shape (random weights)")
    parser.add_argument("--batch", type=int, help="prompts per batch (default: the shape's)")
    parser.add_argument("--steps", type=int, help="MILR steps timed per mode (default: the shape's)")
    parser.add_argument("--think-tokens", type=int, help="think-text tokens (a random model never stops earlier)")
    parser.add_argument("--prompts", type=int, help="prompts in the throughput runs (default: the shape's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"], help="auto: bf16 on CUDA")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="CPU threads (0: torch's default). One thread is the default because a busy shared machine "
        "makes multi-threaded timings swing tenfold (OpenMP threads wait on each other)",
    )  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="GPU fast path: static KV cache + compiled image decode step")
    parser.add_argument("--static-cache", action="store_true", help="static KV cache for the image decode")
    parser.add_argument("--lr", type=float, default=0.03, help="latent lr (larger: the text prefix changes more often)")
    parser.add_argument("--profile", action="store_true", help="cProfile one extra `both` step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reward-config", help="reward YAML as in configs/rewards/ (e.g. one written by python -m rewards.random_weights); "
        "default: a free brightness reward, so a step's time is MILR's own",
    )  # fmt: skip
    parser.add_argument("--prompts-file", help="prompt file (e.g. GenEval's evaluation_metadata.jsonl, whose metadata its reward needs)")
    parser.add_argument("--rss-prompts", type=int, default=1000, help="prompts of the host-memory run (RSS growth per 1000 prompts; 0: skip it)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--suite", choices=["default", "gpu"], default="default", help="gpu: the budgeted GPU suite (milr.gpu_bench; its own options, see --suite gpu --help)")
    args = vars(parser.parse_args(argv))
    as_json = args.pop("json")
    args.pop("suite")
    return BenchConfig(**args), as_json


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything printed while measuring to stderr, native writes included (the tokenizer
    trainer's progress bar writes to file descriptor 1), so stdout carries only the report."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--suite=gpu" in argv or any(a == "--suite" and b == "gpu" for a, b in zip(argv, argv[1:])):
        from milr.gpu_bench import main as gpu_main  # imports this module: loaded only when asked

        return gpu_main([a for a in argv if a not in ("--suite", "gpu", "--suite=gpu")])
    cfg, as_json = parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    with stdout_to_stderr():
        report = rounded(run_bench(cfg))
    profile = report.pop("profile", "")
    if as_json:
        print(json.dumps(report))
        if profile:
            print(profile, file=sys.stderr)
    else:
        render(report)
        if profile:
            print(profile)
    return report


if __name__ == "__main__":
    main()
