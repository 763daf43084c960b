"""``python -m milr.bench`` (the default suite): what a MILR step costs next to a plain Janus-Pro image generation.

Measured side by side in one process, on a random model of the chosen shape (``milr.bench.model_sizes``):

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
import gc
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

import milr
from data.prompt import Prompt
from milr.backbone import JanusBackbone, resolve_device
from milr.bench.model_sizes import SHAPES, Shape, random_backbone
from milr.bench.output import rounded, stdout_to_stderr
from milr.bench.prompts import bench_prompts
from milr.bench.reward import BenchReward, Brightness
from milr.bench.targets import check_targets
from milr.bench.timing import (
    StepClock,
    clock,
    compile_all_shapes,
    decode_bound,
    peak_memory_mb,
    prompts_per_hour,
    shadowing,
    time_generate,
    time_mode,
)
from milr.prompts import image_prompt, think_text
from rewards.base import Reward, from_config, score

MODES = ("text", "image", "both")


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


@dataclass
class BenchConfig:
    """What to measure; ``None`` takes the shape's default (``milr.bench.model_sizes.SHAPES``)."""

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
    parser.add_argument("--suite", choices=["default", "gpu"], default="default", help="gpu: the budgeted GPU suite (milr.bench.gpu; its own options, see --suite gpu --help)")
    args = vars(parser.parse_args(argv))
    as_json = args.pop("json")
    args.pop("suite")
    return BenchConfig(**args), as_json


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure, then print the report as tables (or ``--json``); returns it."""
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
