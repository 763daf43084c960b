"""Two CPU ranks optimise disjoint shards of the prompts, with no gradient all-reduce."""

from __future__ import annotations

import json

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy

import train_free_runner
from milr.strategy import IndependentRanks


@pytest.fixture(autouse=True)
def one_intra_op_thread():
    """The ranks are forked from this process (``start_method: fork``, to keep the test fast); a
    fork after torch ran OpenMP teams leaves the children a thread pool whose threads do not exist,
    and their first parallel op can wait forever. One thread per process has no team to inherit.
    (The runner's own launchers start fresh processes: torchrun, srun, Lightning's ``popen``.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


TWO_RANKS = ["--trainer.devices", "2", "--trainer.strategy", "milr.strategy.IndependentRanks",
             "--trainer.strategy.start_method", "fork"]


def _run(out, *extra):
    common = ["--output_dir", str(out), "--model.max_steps", "3", "--model.reward_threshold", "null",
              "--model.reward", "tests.helpers.CrashingReward", "--trainer.enable_progress_bar", "false"]
    return train_free_runner.main([*common, *extra])


def _each_prompt_once(out) -> None:
    results = sorted(out.glob("*/result.json"))
    assert [p.parent.name for p in results] == [f"{i:05d}" for i in range(6)]
    for path in results:
        trace = [json.loads(x)["step"] for x in (path.parent / "trace" / "0000.jsonl").read_text().splitlines()]
        assert trace == [0, 1, 2, 3]  # every step once: nothing redone, nothing lost
    assert not list(out.glob(".inflight/*.pt"))


def test_a_two_rank_run_that_dies_is_finished_by_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("MILR_TEST_CRASH_ON", "3")  # every rank's reward dies at its third call
    try:
        _run(tmp_path, *TWO_RANKS)
    except Exception:  # noqa: BLE001 - the launcher re-raises the ranks' error in its own type
        pass
    assert list(tmp_path.glob(".inflight/*.pt"))  # both ranks left prompts mid-optimisation
    monkeypatch.delenv("MILR_TEST_CRASH_ON")
    _run(tmp_path)
    _each_prompt_once(tmp_path)


def test_a_one_process_run_that_dies_is_finished_by_two_ranks(tmp_path, monkeypatch):
    monkeypatch.setenv("MILR_TEST_CRASH_ON", "4")
    try:
        _run(tmp_path, "--data.batch_size", "2")
    except RuntimeError:
        pass
    assert list(tmp_path.glob(".inflight/*.pt"))
    monkeypatch.delenv("MILR_TEST_CRASH_ON")
    _run(tmp_path, *TWO_RANKS)
    _each_prompt_once(tmp_path)
