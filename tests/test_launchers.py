"""Runs started by an external launcher (torchrun, srun): the process count comes from the
launcher's environment, each prompt is optimised once, the images are a one-process run's."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import train_free_runner

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--config", str(ROOT / "configs" / "tiny.yaml")]  # subprocesses: the conftest default reaches in-process runs only
QUICK = ["--model.max_steps", "2", "--model.reward.init_args.calibration_samples", "8", "--trainer.enable_progress_bar", "false"]


def _images(out: Path) -> dict[str, bytes]:
    return {p.parent.parent.name: p.read_bytes() for p in sorted(out.glob("*/samples/0000.png"))}


def test_two_srun_tasks_shard_the_prompts_like_one_process(tmp_path):
    job = str(random.randrange(10_000, 99_999))  # Lightning derives the rendezvous port from the job id
    slurm = {"SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1", "SLURM_JOB_NUM_NODES": "1",
             "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost", "SLURM_JOB_ID": job, "SLURM_JOB_NAME": "milr-test",
             "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "2", "SLURM_TASKS_PER_NODE": "2"}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC", "RANK", "LOCAL_RANK", "WORLD_SIZE"))}
    base.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    command = [sys.executable, str(ROOT / "train_free_runner.py"), *TINY, "--output_dir", str(tmp_path / "two"), *QUICK]
    ranks = [subprocess.Popen(command, cwd=ROOT, env={**base, **slurm, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in ranks]
    assert [p.returncode for p in ranks] == [0, 0], outputs
    train_free_runner.main(["--output_dir", str(tmp_path / "one"), *QUICK])

    two, one = tmp_path / "two", tmp_path / "one"
    assert list(_images(two)) == [f"{i:05d}" for i in range(6)]
    assert _images(two) == _images(one)
    for path in two.glob("*/result.json"):
        steps = json.loads(path.read_text())["repeats"][0]["steps"]
        assert len((path.parent / "trace" / "0000.jsonl").read_text().splitlines()) == steps + 1  # optimised once
    summary = json.loads((two / "summary.json").read_text())
    assert summary["prompts"] == 6 and summary["selected_reward_mean"] == json.loads((one / "summary.json").read_text())["selected_reward_mean"]
    assert len((two / "runs.jsonl").read_text().splitlines()) == 1  # one line for the run, not one per rank
    assert "MILR summary" in outputs[0] and "MILR summary" not in outputs[1]


def _torchrun_env(monkeypatch, world: int = 2) -> None:
    for name, value in {"TORCHELASTIC_RUN_ID": "test", "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world),
                        "RANK": "0", "LOCAL_RANK": "0", "GROUP_RANK": "0"}.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("flags, named", [
    (["--trainer.devices", "4"], "--trainer.devices 4 does not match torchrun, which started 2"),
    (["--trainer.num_nodes", "2"], "--trainer.num_nodes 2 does not match torchrun, which started 1"),
    (["--trainer.strategy", "milr.strategy.IndependentRanks"], "--trainer.strategy milr.strategy.IndependentRanks: a run of several"),
])
def test_a_launch_the_options_contradict_is_refused_before_anything_loads(tmp_path, monkeypatch, capsys, flags, named):
    _torchrun_env(monkeypatch)
    monkeypatch.setattr(train_free_runner, "check_config", lambda *_: pytest.fail("checked the config after a bad launch"))
    with pytest.raises(SystemExit) as exit_:
        train_free_runner.main(["--output_dir", str(tmp_path / "out"), *flags])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("world, devices, expected", [
    (2, 1, (2, "milr_independent")),  # torchrun's count replaces a config's devices: 1
    (None, 2, (2, "milr_independent")),  # Lightning's own launcher: independent ranks, not DDP
    (None, 1, (1, "auto")),  # one process: nothing to shard
])
def test_the_process_count_comes_from_the_launcher(monkeypatch, world, devices, expected):
    if world is not None:
        _torchrun_env(monkeypatch, world)
    trainer = SimpleNamespace(devices=devices, num_nodes=1, strategy="auto")
    train_free_runner.check_launch(trainer, [])
    assert (trainer.devices, trainer.strategy) == expected
