"""``summary.json`` (means over every complete prompt) and ``runs.jsonl`` (one line per finished
run): what a run folder says about itself as a whole."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from milr.files import atomic_write
from milr.results.layout import INFLIGHT, RUNS_FILE, SUMMARY_FILE
from milr.results.write import complete_results, failed_records


def summarize(output_dir: Path, seconds: float, reward_retries: int = 0) -> dict[str, Any]:
    """Means over every complete prompt in ``output_dir`` (this run and earlier, resumed ones),
    each repeat once.

    ``seconds_this_run`` is this run's wall time; ``seconds_all_runs`` adds the runs logged in
    ``runs.jsonl`` before it (the folder's total). ``failed`` lists the prompts whose reward failed
    and that are still not complete; ``reward_retries`` counts this run's repeated reward calls."""
    results = complete_results(output_dir)
    records = [rep for r in results for rep in r["repeats"]]
    n = len(records)

    def mean(key: str) -> float | None:
        return sum(r[key] for r in records) / n if n else None

    runs = Path(output_dir) / RUNS_FILE
    earlier = sum(json.loads(line)["seconds"] for line in runs.read_text().splitlines()) if runs.is_file() else 0.0
    return {
        "prompts": len(results),
        "images": n,
        "initial_reward_mean": mean("initial_reward"),
        "final_reward_mean": mean("final_reward"),
        "selected_reward_mean": mean("selected_reward"),
        "best_reward_mean": mean("best_reward"),
        "mean_steps": mean("steps"),
        "in_flight": sorted(p.stem for p in Path(output_dir, INFLIGHT).glob("*.pt")),
        "seconds_this_run": round(seconds, 3),
        "seconds_all_runs": round(earlier + seconds, 3),
        "reward_retries": reward_retries,
        "failed": [{k: r[k] for k in ("uid", "index", "prompt", "reason", "step")} for r in failed_records(output_dir)],
    }


def write_summary(output_dir: Path, seconds: float, retries: int, written: int) -> dict[str, Any]:
    """Write ``summary.json`` and append this run's line to ``runs.jsonl``; returns the summary."""
    summary = summarize(output_dir, seconds, retries)
    atomic_write(Path(output_dir) / SUMMARY_FILE, json.dumps(summary, indent=1))
    runs = Path(output_dir) / RUNS_FILE
    earlier = runs.read_text() if runs.is_file() else ""
    line = json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(seconds, 3),
                       "prompts_written": written, "reward_retries": retries})
    atomic_write(runs, earlier + line + "\n")
    return summary
