"""Soak: 200 prompts on the tiny model, a reward failing (transiently) 10 % of the time, the runner
killed with SIGKILL every 30 s and restarted until it finishes. At the end every prompt is complete
exactly once, its trace runs 0..n without gaps or repeats, and summary.json counts 200.

Not part of CI (10–25 minutes): ``MILR_SOAK=1 python -m pytest -q -s tests/test_soak.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(os.environ.get("MILR_SOAK") != "1", reason="soak test: set MILR_SOAK=1 (10-25 minutes)")
PROMPTS, KILL_EVERY, MAX_RESTARTS = 200, 30.0, 60


def test_killed_every_30_seconds_the_run_still_completes_each_prompt_exactly_once(tmp_path):
    source = tmp_path / "prompts.txt"
    colours = ["red", "green", "blue", "yellow", "purple", "orange", "pink", "white", "black", "brown"]
    source.write_text("".join(f"a {colours[i % 10]} object number {i}\n" for i in range(PROMPTS)))
    out = tmp_path / "out"
    command = [
        sys.executable, "train_free_runner.py", "--config", "configs/tiny.yaml", "--output_dir", str(out), "--data.path", str(source),
        "--model.reward", "tests.helpers.FlakyReward", "--model.reward.failure_rate", "0.1",
        "--model.reward_retries", "8", "--model.reward_backoff", "0.01", "--model.max_steps", "4",
        "--model.reward_threshold", "0.9", "--data.batch_size", "8", "--trainer.enable_progress_bar", "false",
    ]
    started, restarts, kills = time.perf_counter(), 0, 0
    while True:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            _, err = proc.communicate(timeout=KILL_EVERY)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            kills += 1
        else:
            assert proc.returncode == 0, err[-3000:]
            summary = json.loads((out / "summary.json").read_text())
            if summary["prompts"] == PROMPTS and not summary["in_flight"]:
                break
        restarts += 1
        assert restarts <= MAX_RESTARTS, "the run does not converge"
    results = sorted(out.glob("*/result.json"))
    assert [p.parent.name for p in results] == [f"{i:05d}" for i in range(PROMPTS)]
    for path in results:
        record = json.loads(path.read_text())
        assert [r["repeat"] for r in record["repeats"]] == [0]
        trace = [json.loads(line)["step"] for line in (path.parent / "trace" / "0000.jsonl").read_text().splitlines()]
        assert trace == list(range(record["repeats"][0]["steps"] + 1))  # no gap, no repeat
    assert summary["prompts"] == PROMPTS and summary["images"] == PROMPTS
    assert not list((out / ".inflight").glob("*.pt")) and not list((out / ".partial").iterdir())
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    retries = sum(r.get("reward_retries", 0) for r in runs)
    print(f"\nsoak: {PROMPTS} prompts in {time.perf_counter() - started:.0f} s, {kills} SIGKILLs, {restarts} restarts, "
          f"{retries} reward retries in the runs that finished")
