"""The performance targets, shared by both suites (the GPU suite's are derived from them)."""

from __future__ import annotations

from typing import Any

#: The performance targets: report key → (comparison, limit, where the target is meant to hold).
TARGETS: dict[str, tuple[str, float, str]] = {
    "step_over_generate": ("<=", 1.15, "any model, same batch"),  # a `both` step / a plain generation
    "image_over_both": ("<=", 0.8, "any model"),  # an `image` step / a `both` step
    "text_cache_speedup": (">=", 5.0, "small"),  # think tokens/s cached / uncached
    "batch_speedup": (">=", 5.0, "GPU, batch 8"),  # prompts/hour at batch B / at batch 1
    "peak_mem_mb": ("<=", 24 * 1024.0, "7b + GenEval reward, CUDA"),  # fits a 24 GB GPU
    "rss_mb_per_1000": ("<=", 5.0, "tiny, CPU"),  # a long run's host memory stays flat
}


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
