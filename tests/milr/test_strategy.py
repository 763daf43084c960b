"""Two CPU ranks optimise disjoint shards of the prompts, with no gradient all-reduce."""

from __future__ import annotations

import json

from lightning.pytorch.strategies import DDPStrategy

import train_free_runner
from milr.strategy import IndependentRanks


def test_independent_ranks_is_ddp_without_the_wrapper():
    assert issubclass(IndependentRanks, DDPStrategy)
    strategy = IndependentRanks()
    strategy.model = sentinel = object()
    strategy.configure_ddp()
    assert strategy.model is sentinel


def test_two_ranks_complete_every_prompt_once(tmp_path):
    train_free_runner.main([
        "--output_dir", str(tmp_path), "--model.max_steps", "2", "--model.reward.init_args.calibration_samples", "8",
        "--trainer.enable_progress_bar", "false", "--trainer.devices", "2",
        "--trainer.strategy", "milr.strategy.IndependentRanks", "--trainer.strategy.start_method", "fork",
    ])
    results = sorted(tmp_path.glob("*/result.json"))
    assert [p.parent.name for p in results] == [f"{i:05d}" for i in range(6)]
    for path in results:
        trace = (path.parent / "trace" / "0000.jsonl").read_text().splitlines()
        assert len(trace) == json.loads(path.read_text())["repeats"][0]["steps"] + 1  # one run per prompt, no duplicates
