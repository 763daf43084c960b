"""``python -m milr.bench --suite gpu``: the performance targets' GPU figures as one budgeted run.

A GPU machine is lent for minutes, so this is one prepared command that cannot waste them. For
each model shape (on CUDA by default 7B, then 1B, random weights built directly on the device in
bf16 by ``milr.bench.model_sizes.random_backbone``) it runs these parts, most important first:

1. ``generate``: transformers' plain generation + VQ decode at batch 1 and at batch B (8);
2. ``both``: a ``both`` step at batch 1 and at batch B (÷ the plain generation: ≤ 1.15);
3. ``image``: an ``image`` step at batch B (÷ the ``both`` step: ≤ 0.8);
4. ``decode``: milr's own image-token decode at batch 1 against the bandwidth bound (tokens/s
   = bandwidth ÷ weight bytes; the bandwidth is ``--bandwidth-gbs``, else the GPU's properties,
   else a measured on-device copy);
5. ``memory``: peak memory of the model plus the reward of ``--reward-config`` (the random-weight
   GenEval reward, which ``scripts/gpu_bench.sh`` writes first) for stage 0 and one step with the
   full think budget, at batch 1, 2, 4, 8 up to the first that does not fit ``--memory-limit-gb``;
6. ``throughput``: prompts/hour at batch B ÷ batch 1 with per-prompt stopping (≥ 5);
7. ``compiled``: static cache + ``torch.compile``: decode at batch 1 against the bound (≥ 70 %)
   and a ``both`` step at batch B.

A part starts only if its estimate fits the time left of ``--budget-s`` (8 minutes by default);
estimates are multiples of the model's own plain generation once that is measured, before that a
prior from the bandwidth bound. A part still running at the limit is interrupted. The JSON and the
Markdown table in ``--out`` are rewritten after every part, so a run stopped anywhere keeps what
it measured, and every part not measured is listed with the reason. The timing parts use the
free brightness reward, so a step's time is MILR's own; only ``memory`` loads ``--reward-config``.
On CPU (``--device cpu --model small``; ``tiny`` in the tests) the same parts run and the 24 GB
verdict is n/a: a CPU's peak memory is the process's peak RSS, not a per-batch figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

import milr
from milr.backbone import JanusBackbone, resolve_device
from milr.bench.model_sizes import SHAPES, parameter_count, random_backbone
from milr.bench.output import rounded, stdout_to_stderr
from milr.bench.prompts import bench_prompts
from milr.bench.reward import Brightness
from milr.bench.targets import TARGETS
from milr.bench.timing import (
    clock,
    compile_all_shapes,
    decode_bound,
    memory_bandwidth_gbs,
    peak_memory_mb,
    prompts_per_hour,
    time_generate,
    time_mode,
)
from milr.files import atomic_write
from milr.prompts import image_prompt
from rewards.base import from_config

PARTS = ("generate", "both", "image", "decode", "memory", "throughput", "compiled")

#: The CUDA default, in order, sized for 8 minutes: what only 7B can answer (the 24 GB check) and
#: the step ratios on 7B; the batch speed-up and the compiled decode on 1B, whose compile is cheaper;
#: then 1B's step ratios if time is left. Run ``--model 7b --parts throughput,compiled`` (``generate``
#: first) in a second call for the rest.
GPU_PLAN: list[tuple[str, list[str]]] = [
    ("7b", ["generate", "both", "image", "decode", "memory"]),
    ("1b", ["generate", "throughput", "compiled", "both", "image", "decode"]),
]

#: report key → (comparison, limit, what it is); the limits are ``milr.bench.targets.TARGETS``' where shared.
GPU_TARGETS: dict[str, tuple[str, float, str]] = {
    "both_over_generate_batch1": (*TARGETS["step_over_generate"][:2], "`both` step ÷ plain generation, batch 1"),
    "both_over_generate_batchB": (*TARGETS["step_over_generate"][:2], "`both` step ÷ plain generation, batch B"),
    "image_over_both": (*TARGETS["image_over_both"][:2], "`image` step ÷ `both` step, batch B"),
    "batch_speedup": (*TARGETS["batch_speedup"][:2], "prompts/hour, batch B ÷ batch 1"),
    "decode_fraction_compiled": (">=", 0.7, "batch-1 decode with static cache + compile ÷ bandwidth bound"),
    "memory_batch1_gb": ("<=", 24.0, "peak memory with the reward, batch 1 (7B + GenEval on CUDA)"),
}


class TimeLimit(BaseException):
    """The global budget ran out inside a part (a BaseException, so no ``except Exception`` eats it)."""


@dataclass
class SuiteConfig:
    plan: list[tuple[str, list[str]]]  # (model shape, its parts in order)
    device: str = "auto"
    budget_s: float = 480.0
    out: str = "out/gpu_bench"
    batch: int = 8
    steps: int = 1  # timed MILR steps per mode (after stage 0)
    stop_steps: int = 2  # throughput: prompt i stops at step 1 + i % stop_steps
    think_tokens: int | None = None  # None: the shape's
    memory_think_tokens: int = 512  # the real think budget: the longest prompts the memory part sees
    memory_batches: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    memory_limit_gb: float = 24.0
    bandwidth_gbs: float | None = None  # None: measured
    compile_estimate_s: float | None = None  # None: 240 on CUDA, 90 on CPU
    reward_config: str | None = None
    prompts_file: str | None = None
    lr: float = 0.03
    seed: int = 0
    threads: int = 1


class Budget:
    """Seconds left of the run's budget; ``armed()`` interrupts a part that runs past it."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def armed(self):
        return _Alarm(self.left()) if threading.current_thread() is threading.main_thread() else _NoAlarm()


class _Alarm:
    def __init__(self, seconds: float) -> None:
        self.seconds = max(seconds, 0.001)

    def __enter__(self) -> None:
        self.previous = signal.signal(signal.SIGALRM, self._raise)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise TimeLimit()


class _NoAlarm:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class Report:
    """Everything measured so far; ``write`` puts it in ``out/gpu_bench.json`` and ``.md``."""

    def __init__(self, cfg: SuiteConfig, device: torch.device, budget: Budget) -> None:
        self.out, self.budget = Path(cfg.out), budget
        self.data: dict[str, Any] = {
            "suite": "gpu",
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "config": json.loads(json.dumps(asdict(cfg))),
            "budget_s": cfg.budget_s,
            "elapsed_s": 0.0,
            "complete": False,  # every part of every model measured
            "stopped_at_time_limit": False,
            "models": {},
            "parts": [],
            "not_measured": [],
            "targets": [],
        }

    def model(self, name: str) -> dict[str, Any]:
        return self.data["models"].setdefault(name, {})

    def part(self, model: str, name: str, status: str, seconds: float, estimate: float, reason: str = "") -> None:
        self.data["parts"].append({"model": model, "part": name, "status": status, "seconds": seconds, "estimate_s": estimate})
        if status != "measured":
            self.data["not_measured"].append({"model": model, "part": name, "reason": reason})
        self.write()

    def not_measured(self, model: str, name: str, reason: str) -> None:
        self.data["not_measured"].append({"model": model, "part": name, "reason": reason})

    def write(self) -> None:
        self.data["elapsed_s"] = time.perf_counter() - self.budget.start
        self.data["complete"] = not self.data["not_measured"] and len(self.data["parts"]) > 0
        self.data["targets"] = check_gpu_targets(self.data)
        self.out.mkdir(parents=True, exist_ok=True)
        data = rounded(self.data)
        atomic_write(self.out / "gpu_bench.json", json.dumps(data, indent=1) + "\n")
        atomic_write(self.out / "gpu_bench.md", markdown(data))


def check_gpu_targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (model, target) with a value: met / missed, or n/a where the verdict does not
    apply (the 24 GB check of anything but a CUDA peak)."""
    rows = []
    for model, values in data["models"].items():
        for key, (op, limit, what) in GPU_TARGETS.items():
            value = values.get(key)
            if value is None:
                continue
            met = value <= limit if op == "<=" else value >= limit
            verdict = "met" if met else "missed"
            note = ""
            if key == "memory_batch1_gb" and data["device"].split(":")[0] != "cuda":
                verdict, note = "n/a", "CPU: process peak RSS, not the GPU's per-run peak"
            elif key == "memory_batch1_gb" and model != "7b":
                note = f"{model}, not 7B"
            rows.append({"model": model, "key": key, "what": what, "value": value, "target": f"{op} {limit:g}", "verdict": verdict, "note": note})
    return rows


def markdown(data: dict[str, Any]) -> str:
    """The report as Markdown: targets, every measured value, and what was not measured and why."""
    state = "complete" if data["complete"] else f"{len(data['not_measured'])} part(s) not measured (listed below)"
    if data["stopped_at_time_limit"]:
        state += ", stopped at the time limit"
    lines = [
        f"# milr GPU bench: {data['device_name']} ({data['device']}), {data['date']}",
        "",
        f"Budget {data['budget_s']:g} s, elapsed {data['elapsed_s']:g} s, {state}. Random weights; "
        f"batch B = {data['config']['batch']}, {data['config']['steps']} timed steps per mode.",
        "",
        "| model | measurement | value | target | verdict | note |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {t['model']} | {t['what']} | {t['value']:g} | {t['target']} | {t['verdict']} | {t['note']} |" for t in data["targets"]]
    lines += ["", "| model | value | |", "|---|---|---|"]
    for model, values in data["models"].items():
        lines += [f"| {model} | {key} | {_cell(value)} |" for key, value in values.items()]
    lines += ["", "| model | part | status | seconds | estimate (s) |", "|---|---|---|---|---|"]
    lines += [f"| {p['model']} | {p['part']} | {p['status']} | {p['seconds']:g} | {p['estimate_s']:g} |" for p in data["parts"]]
    if data["not_measured"]:
        lines += ["", "Not measured:", ""]
        lines += [f"- {n['model']} `{n['part']}`: {n['reason']}" for n in data["not_measured"]]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


# ---------------------------------------------------------------------- measurements
def time_decode(bb: JanusBackbone, prompt: str, seed: int = 0) -> float:
    """Seconds of milr's own image-token decode of one chat-formatted prompt (batch 1), from its
    prefilled context: the loop ``compile`` speeds up."""
    context = bb.image_context([prompt])
    start = clock(bb.device)
    bb.sample_image(context, [torch.Generator(bb.device).manual_seed(seed)])
    return clock(bb.device) - start


def device_bandwidth_gbs(device: torch.device) -> float | None:
    """The GPU's peak memory bandwidth from its properties (double data rate × bus width), where
    this torch build reports them; None otherwise."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9 if clock_khz and bus_bits else None


def peak_gb(device: torch.device) -> dict[str, float]:
    """Peak memory since the last reset: CUDA allocated and reserved, or the CPU process's RSS."""
    if device.type == "cuda":
        return {"allocated_gb": torch.cuda.max_memory_allocated(device) / 2**30, "reserved_gb": torch.cuda.max_memory_reserved(device) / 2**30}
    return {"process_peak_rss_gb": peak_memory_mb(device) / 1024}


class ModelRun:
    """The parts of one model shape, sharing its backbone, prompts and measured generation times."""

    def __init__(self, cfg: SuiteConfig, model: str, parts: list[str], device: torch.device, report: Report, budget: Budget) -> None:
        self.cfg, self.model, self.parts, self.device, self.report, self.budget = cfg, model, parts, device, report, budget
        self.shape = SHAPES[model]
        self.values = report.model(model)
        self.bb: JanusBackbone | None = None
        self.params = parameter_count(self.shape) if self.shape.text else 10**6  # tiny: about a million
        self.g1 = self.gb = self._prior_generation()

    def _prior_generation(self) -> float:
        """Before anything is measured: one generation at 4× the bandwidth bound, plus 1 s."""
        bytes_per = 2 if self.device.type == "cuda" else 4
        return 4 * self.shape.image_tokens * self.params * bytes_per / (self.bandwidth_gbs() * 1e9) + 1.0

    def bandwidth_gbs(self) -> float:
        """``--bandwidth-gbs``, else the device's own figure, else a measured copy (recorded with
        its source; the measured copy is recorded too, for comparison)."""
        if self.cfg.bandwidth_gbs is None:
            measured = memory_bandwidth_gbs(self.device)
            spec = device_bandwidth_gbs(self.device)
            self.cfg.bandwidth_gbs = measured if spec is None else spec
            source = "measured on-device copy (read + write)" if spec is None else "device properties: 2 × memory clock × bus width"
            self.report.data["bandwidth"] = {"gbs": self.cfg.bandwidth_gbs, "source": source, "measured_copy_gbs": measured}
        return self.cfg.bandwidth_gbs

    # -------------------------------------------------------------- running
    def attempt(self, name: str, estimate: float, fn: Callable[[], None]) -> bool:
        left = self.budget.left()
        if estimate > left:
            self.report.part(self.model, name, "skipped", 0.0, estimate, f"budget: estimated {estimate:.0f} s, {max(left, 0):.0f} s left")
            return False
        start = time.perf_counter()
        try:
            with self.budget.armed():
                fn()
        except TimeLimit:
            self.report.part(self.model, name, "interrupted", time.perf_counter() - start, estimate, "interrupted at the time limit")
            raise
        except Exception as err:  # one failed part must not cost the others their device time
            traceback.print_exc(file=sys.stderr)
            self.report.part(self.model, name, "failed", time.perf_counter() - start, estimate, f"failed: {type(err).__name__}: {err}")
            return False
        self.report.part(self.model, name, "measured", time.perf_counter() - start, estimate)
        return True

    def run(self) -> None:
        prior_build = self.params * 2 / 2e9 + 5 if self.shape.text else 2.0  # random init at ~1 G parameters/s
        if not self.attempt("build", prior_build, self.build):
            for name in self.parts:
                self.report.not_measured(self.model, name, "the model was not built")
            return
        s, stops = self.cfg.steps, self.cfg.stop_steps
        warm = 2 if self.device.type == "cuda" else 1
        # in plain generations (g1, gB): a MILR batch (stage 0 or a step) took up to 2.4 of them on
        # the shared 2-core CPU at `small` (README); 2 errs on the side of skipping a part
        estimates = {
            "generate": lambda: warm * (self.g1 + self.gb) + self.gb,
            "both": lambda: (s + 1) * 2.0 * (self.g1 + self.gb),
            "image": lambda: (s + 1) * 2.0 * self.gb,
            "decode": lambda: warm * 1.5 * self.g1 + 3,
            "memory": lambda: self.reward_load_s() + self.memory_batch_s(self.cfg.memory_batches[0]),
            "throughput": lambda: stops * (1 + (stops + 1) / 2) * 1.5 * self.g1 + (stops + 1) * 1.5 * self.gb,
            "compiled": lambda: self.compile_s() + 3 * self.g1 + (s + 1) * 2.0 * self.gb,
        }
        todo = self.parts
        for i, name in enumerate(todo):
            if name != "generate" and "generate_s_batch1" not in self.values:
                self.report.not_measured(self.model, name, "needs the plain generation, which was not measured")
            elif name == "memory" and self.cfg.reward_config is None:
                self.report.not_measured(self.model, name, "no --reward-config (scripts/gpu_bench.sh writes the random-weight GenEval one)")
            else:
                try:
                    self.attempt(name, estimates[name](), getattr(self, name))
                except TimeLimit:
                    for later in todo[i + 1 :]:
                        self.report.not_measured(self.model, later, "the time limit was reached before this part")
                    raise

    def release(self) -> None:
        self.bb = None
        torch._dynamo.reset()  # compiled graphs (and their CUDA graph pools) hold the old model
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def memory_batch_s(self, batch: int) -> float:
        """Stage 0 and one step at ``batch`` with the memory part's think budget: two MILR batches
        (2 plain generations each, as above) plus the longer think text (a decode step per token)."""
        generation = self.g1 + (self.gb - self.g1) * (batch - 1) / max(self.cfg.batch - 1, 1)
        return (4.0 + self.cfg.memory_think_tokens / self.shape.image_tokens) * generation

    def reward_load_s(self) -> float:
        return 60.0 if self.device.type == "cuda" else 20.0

    def compile_s(self) -> float:
        if self.cfg.compile_estimate_s is not None:
            return self.cfg.compile_estimate_s
        return 240.0 if self.device.type == "cuda" else 90.0

    # -------------------------------------------------------------- parts
    def build(self) -> None:
        think = self.cfg.think_tokens or self.shape.think_tokens
        self.bb = random_backbone(self.shape, device=str(self.device), seed=self.cfg.seed, max_think_tokens=think)
        weights = sum(p.numel() * p.element_size() for p in self.bb.model.parameters())
        self.values.update(
            params_m=sum(p.numel() for p in self.bb.model.parameters()) / 1e6, weight_gb=weights / 2**30,
            dtype=str(self.bb.dtype).removeprefix("torch."), image_tokens=self.bb.num_image_tokens, think_tokens=think,
        )  # fmt: skip
        self.prompts = bench_prompts(None, max(self.cfg.batch, self.cfg.stop_steps))
        texts = self.bb.think([p.text for p in self.prompts[: self.cfg.batch]]).texts
        self.image_prompts = [image_prompt(p.text, t) for p, t in zip(self.prompts, texts)]

    def generate(self) -> None:
        bb, b = self.bb, self.cfg.batch
        if self.device.type == "cuda":
            time_generate(bb, self.image_prompts[:b], self.cfg.seed)  # warm-up: kernels, allocator
        self.g1 = time_generate(bb, self.image_prompts[:1], self.cfg.seed)[1]
        self.gb = time_generate(bb, self.image_prompts[:b], self.cfg.seed)[1]
        self.values.update(generate_s_batch1=self.g1, generate_s_batchB=self.gb)

    def _step_s(self, mode: str, batch: int) -> float:
        return time_mode(self.bb, mode, self.prompts[:batch], self.cfg.steps, self.cfg.lr, Brightness()).step_s

    def both(self) -> None:
        one, many = self._step_s("both", 1), self._step_s("both", self.cfg.batch)
        self.values.update(
            both_step_s_batch1=one, both_step_s_batchB=many,
            both_over_generate_batch1=one / self.g1, both_over_generate_batchB=many / self.gb,
        )  # fmt: skip

    def image(self) -> None:
        step = self._step_s("image", self.cfg.batch)
        self.values["image_step_s_batchB"] = step
        if "both_step_s_batchB" in self.values:
            self.values["image_over_both"] = step / self.values["both_step_s_batchB"]

    def _decode_bound(self, kind: str) -> None:
        if self.device.type == "cuda":
            time_decode(self.bb, self.image_prompts[0], self.cfg.seed)  # warm-up (and CUDA graph recording)
        bound = decode_bound(self.bb, time_decode(self.bb, self.image_prompts[0], self.cfg.seed), self.bandwidth_gbs())
        self.values[f"decode_{kind}"] = bound
        self.values[f"decode_fraction_{kind}"] = bound["fraction_of_bound"]

    def decode(self) -> None:
        self._decode_bound("eager")

    def compiled(self) -> None:
        bb = self.bb
        bb.set_fast_path(static_cache=True, compile=True)
        try:
            start = time.perf_counter()
            compile_all_shapes(bb, self.image_prompts[: self.cfg.batch])
            self.values["compile_s"] = time.perf_counter() - start
            self._decode_bound("compiled")
            self.values["both_step_s_batchB_compiled"] = self._step_s("both", self.cfg.batch)
        finally:
            bb.set_fast_path(static_cache=False, compile=False)

    def throughput(self) -> None:
        s, b = self.cfg.stop_steps, self.cfg.batch
        # batch 1 over one cycle of the stop schedule (prompt i stops at step 1 + i % s): the same
        # mean steps per prompt as the batch-B run when B is a multiple of s
        one = prompts_per_hour(self.bb, self.prompts[:s], 1, s, Brightness())
        many = prompts_per_hour(self.bb, self.prompts[:b], b, s, Brightness())
        self.values.update(prompts_per_hour_batch1=one, prompts_per_hour_batchB=many, batch_speedup=many / one)

    def memory(self) -> None:
        """Stage 0 and one ``both`` step with the full think budget and the measured reward, at
        growing batch sizes until one does not fit the limit (or runs out of memory)."""
        bb, cuda = self.bb, self.device.type == "cuda"
        reward = from_config(self.cfg.reward_config)
        prompts = bench_prompts(self.cfg.prompts_file, max(self.cfg.memory_batches))
        think, bb.max_think_tokens = bb.max_think_tokens, self.cfg.memory_think_tokens
        peaks: dict[str, Any] = {}
        self.values["memory"] = {"reward": reward.name, "think_tokens": self.cfg.memory_think_tokens, "batches": peaks}
        try:
            for batch in self.cfg.memory_batches:
                estimate = self.memory_batch_s(batch)
                if peaks and estimate > self.budget.left():
                    self.report.not_measured(self.model, f"memory batch {batch}", f"budget: estimated {estimate:.0f} s")
                    break
                if cuda:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(self.device)
                try:
                    milr.optimize(list(prompts[:batch]), bb, reward, mode="both", max_steps=1, batch_size=batch)
                except torch.cuda.OutOfMemoryError:
                    peaks[str(batch)] = "out of memory"
                    break
                peaks[str(batch)] = peak_gb(self.device)
                self.report.write()
                if cuda and peaks[str(batch)]["allocated_gb"] > self.cfg.memory_limit_gb:
                    break
        finally:
            bb.max_think_tokens = think
        first = peaks.get(str(self.cfg.memory_batches[0]))
        if isinstance(first, dict):
            self.values["memory_batch1_gb"] = first.get("allocated_gb", first.get("process_peak_rss_gb"))
        if cuda:
            fits = [int(b) for b, p in peaks.items() if isinstance(p, dict) and p["allocated_gb"] <= self.cfg.memory_limit_gb]
            self.values["memory_largest_batch_within_limit"] = max(fits) if fits else 0
        else:
            self.values["memory_largest_batch_within_limit"] = "n/a on CPU"


def run_suite(cfg: SuiteConfig) -> dict[str, Any]:
    """Every model's parts within the budget; returns the report (also written to ``cfg.out``)."""
    unknown = [m for m, _ in cfg.plan if m not in SHAPES] + [p for _, parts in cfg.plan for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown model shapes or parts {unknown}: models {sorted(SHAPES)}, parts {list(PARTS)}")
    device = resolve_device(cfg.device)
    threads = torch.get_num_threads()
    if cfg.threads and device.type == "cpu":
        torch.set_num_threads(cfg.threads)
    budget = Budget(cfg.budget_s)
    report = Report(cfg, device, budget)
    if cfg.bandwidth_gbs is not None:
        report.data["bandwidth"] = {"gbs": cfg.bandwidth_gbs, "source": "--bandwidth-gbs"}
    report.write()
    try:
        for i, (model, parts) in enumerate(cfg.plan):
            run = ModelRun(cfg, model, parts, device, report, budget)
            try:
                run.run()
            except TimeLimit:
                report.data["stopped_at_time_limit"] = True
                for later, _ in cfg.plan[i + 1 :]:
                    report.not_measured(later, "all parts", "the time limit was reached before this model")
                break
            finally:
                run.release()
    finally:
        torch.set_num_threads(threads)
        report.write()
    return rounded(report.data)


def parse_args(argv: Sequence[str] | None = None) -> SuiteConfig:
    parser = argparse.ArgumentParser(
        prog="python -m milr.bench --suite gpu",
        description="The performance targets' GPU figures in one budgeted run (JSON + Markdown in --out).",
    )
    parser.add_argument("--model", default=None, help="comma-separated shapes, each running --parts (default on CUDA: GPU_PLAN; on CPU: small)")
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto")
    parser.add_argument("--budget-s", type=float, default=480.0, help="global time limit; parts that do not fit are skipped")
    parser.add_argument("--out", default="out/gpu_bench", help="folder for gpu_bench.json and gpu_bench.md")
    parser.add_argument("--batch", type=int, default=8, help="the large batch B")
    parser.add_argument("--steps", type=int, default=1, help="timed MILR steps per mode, after stage 0")
    parser.add_argument("--stop-steps", type=int, default=2, help="throughput: prompt i stops at step 1 + i %% stop-steps")
    parser.add_argument("--think-tokens", type=int, help="think tokens of the timing parts (default: the shape's)")
    parser.add_argument("--memory-think-tokens", type=int, default=512, help="think tokens of the memory part")
    parser.add_argument("--memory-batches", default="1,2,4,8", help="batch sizes of the memory part, in order")
    parser.add_argument("--memory-limit-gb", type=float, default=24.0, help="memory budget (GiB) of the largest-batch search")
    parser.add_argument("--bandwidth-gbs", type=float, help="the device's memory bandwidth (default: the GPU's properties, else a measured copy)")
    parser.add_argument("--compile-estimate-s", type=float, help="budget estimate of compiling the decode step")
    parser.add_argument("--reward-config", help="reward YAML of the memory part (the random-weight GenEval one)")
    parser.add_argument("--prompts-file", help="prompts of the memory part (GenEval's metadata file for its reward)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--lr", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (0: torch's default)")
    args = vars(parser.parse_args(argv))
    model, parts = args.pop("model"), args.pop("parts").split(",")
    args["memory_batches"] = [int(b) for b in args["memory_batches"].split(",")]
    if min(args["batch"], args["steps"], args["stop_steps"], *args["memory_batches"]) < 1:
        raise SystemExit("--batch, --steps, --stop-steps and --memory-batches must be >= 1")
    if model is None and resolve_device(args["device"]).type == "cuda":
        plan = [(m, list(p)) for m, p in GPU_PLAN]
    else:
        plan = [(m, parts) for m in (model or "small").split(",")]
    return SuiteConfig(plan=plan, **args)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    cfg = parse_args(argv)
    with stdout_to_stderr():
        data = run_suite(cfg)
    print((Path(cfg.out) / "gpu_bench.md").read_text())
    failed = [p for p in data["parts"] if p["status"] == "failed"]
    if failed:
        print(f"{len(failed)} part(s) failed: {[(p['model'], p['part']) for p in failed]}", file=sys.stderr)
    return data
