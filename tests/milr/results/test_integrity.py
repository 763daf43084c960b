"""The results folder is the source of truth: what it says was produced, was produced, exactly
once, by the configuration it records — across re-runs, crashes, time limits and concurrent runs.
Each test reproduces one way a folder used to go wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import train_free_runner
from milr.results.fingerprint import RunMismatch
from milr.results.lock import RunLock

ROOT = Path(__file__).resolve().parents[3]
FAST = ["--model.reward.init_args.calibration_samples", "16", "--trainer.enable_progress_bar", "false"]


def run(out: Path, *extra: str) -> dict:
    return train_free_runner.main(["--output_dir", str(out), *FAST, *extra])


def refused(capsys, out: Path, *extra: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        run(out, *extra)
    assert exit_.value.code == 2
    return capsys.readouterr().err


def results(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/result.json"))}


def test_other_settings_in_the_same_folder_are_refused_before_any_model_loads(tmp_path, capsys):
    run(tmp_path, "--model.max_steps", "2")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    err = refused(capsys, tmp_path, "--model.max_steps", "2", "--model.lr", "0.1")
    assert "holds a run with other settings (model.lr: 0.03 -> 0.1)" in err and "--new_run NAME" in err
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before  # config.yaml untouched
    # settings that cannot change results do not count: another batch size resumes (nothing left to do)
    assert run(tmp_path, "--model.max_steps", "2", "--data.batch_size", "2") == {}
    # --new_run starts a separate, complete run inside the folder
    summary = run(tmp_path, "--model.max_steps", "2", "--model.lr", "0.1", "--new_run", "lr0.1")
    assert summary["prompts"] == 6 and "lr: 0.1" in (tmp_path / "lr0.1" / "config.yaml").read_text()
    assert json.loads((tmp_path / "run.json").read_text())["settings"]["model.lr"] == 0.03


def test_other_prompts_under_the_same_keys_are_refused(tmp_path, capsys):
    run(tmp_path, "--model.max_steps", "1")
    err = refused(capsys, tmp_path, "--model.max_steps", "1", "--data.prompts", "[a green tree]")
    assert "00000 holds another prompt ('a photo of a red apple') than this run's 00000 ('a green tree')" in err


def test_several_benchmark_files_share_one_folder_each_prompt_once(tmp_path):
    """Two T2I-CompBench categories (and two WISE files) into one folder: keys never collide."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "color_val.txt").write_text("a red car\na blue cup\n")
    (data / "shape_val.txt").write_text("a round box\na square ball\n")
    out = tmp_path / "out"
    for name in ("color_val.txt", "shape_val.txt"):
        summary = run(out, "--model.max_steps", "1", "--data.path", str(data / name))
    assert summary["prompts"] == 4
    assert sorted(results(out)) == ["color_00000", "color_00001", "shape_00000", "shape_00001"]
    wise = []
    for file, ids in (("a.json", (1, 2)), ("b.json", (101, 102))):
        items = [{"Prompt": f"prompt {i}", "Explanation": "x", "Category": "c", "prompt_id": i} for i in ids]
        (data / file).write_text(json.dumps(items))
        wise.append(data / file)
    for path in wise:
        run(tmp_path / "wise", "--model.max_steps", "1", "--data.path", str(path))
    assert sorted(results(tmp_path / "wise")) == ["wise_0001", "wise_0002", "wise_0101", "wise_0102"]


def test_repeats_write_one_sample_per_repeat_with_distinct_seeds(tmp_path):
    summary = run(tmp_path, "--model.max_steps", "1", "--data.repeats", "3", "--data.prompts", "[a red apple]")
    assert summary["prompts"] == 1 and summary["images"] == 3
    folder = tmp_path / "00000"
    samples = sorted(p.name for p in (folder / "samples").iterdir())
    assert samples == ["0000.png", "0001.png", "0002.png"]
    assert len({(folder / "samples" / s).read_bytes() for s in samples}) == 3  # independent runs, own seeds
    record = results(tmp_path)["00000"]
    assert [r["repeat"] for r in record["repeats"]] == [0, 1, 2] and record["prompt"] == "a red apple"


def _crash_then_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, dict]:
    """The same run twice: uninterrupted, and crashed by a reward error at call 7 then resumed."""
    common = ["--model.max_steps", "4", "--model.reward_threshold", "0.99", "--data.batch_size", "2",
              "--model.reward", "tests.helpers.CrashingReward"]
    run(tmp_path / "whole", *common)
    monkeypatch.setenv("MILR_TEST_CRASH_ON", "7")
    with pytest.raises(RuntimeError, match="reward server went away"):
        run(tmp_path / "broken", *common)
    inflight = sorted(p.name for p in (tmp_path / "broken" / ".inflight").glob("*.pt"))
    assert inflight  # the prompts that were running are kept, not written as complete
    assert not {p.split("#")[0] for p in inflight} & set(results(tmp_path / "broken"))
    monkeypatch.delenv("MILR_TEST_CRASH_ON")
    run(tmp_path / "broken", *common)
    return results(tmp_path / "whole"), results(tmp_path / "broken")


def test_prompts_interrupted_mid_optimisation_continue_to_the_same_result(tmp_path, monkeypatch):
    whole, resumed = _crash_then_resume(tmp_path, monkeypatch)
    assert sorted(whole) == sorted(resumed) == [f"{i:05d}" for i in range(6)]
    for key in whole:
        a, b = whole[key]["repeats"][0], resumed[key]["repeats"][0]
        assert (a["steps"], a["stop_reason"], a["text"]) == (b["steps"], b["stop_reason"], b["text"])
        assert b["selected_reward"] == pytest.approx(a["selected_reward"], abs=1e-6)
        trace_a = [json.loads(x) for x in (tmp_path / "whole" / key / "trace" / "0000.jsonl").read_text().splitlines()]
        trace_b = [json.loads(x) for x in (tmp_path / "broken" / key / "trace" / "0000.jsonl").read_text().splitlines()]
        assert [t["step"] for t in trace_b] == list(range(len(trace_a)))  # no gap, no repeat
        assert [t["reward"] for t in trace_b] == pytest.approx([t["reward"] for t in trace_a], abs=1e-6)
    assert not list((tmp_path / "broken" / ".inflight").glob("*.pt")) and not list((tmp_path / "broken" / ".partial").iterdir())


@pytest.mark.parametrize(
    "stop",
    [["--trainer.max_steps", "2"],
     ["--trainer.max_time", "00:00:00:01", "--model.reward", "tests.helpers.SlowReward", "--model.reward.seconds", "0.4"]],
    ids=["max_steps", "max_time"],
)
def test_a_fit_ended_by_a_limit_leaves_running_prompts_in_flight_not_complete(tmp_path, stop):
    """Before: such prompts were written complete after 0-2 steps (stop_reason fit_end) and never redone."""
    reward = stop[stop.index("--model.reward"):] if "--model.reward" in stop else []
    summary = run(tmp_path, "--model.max_steps", "6", "--model.reward_threshold", "null", *stop)
    assert summary["prompts"] < 6 and summary["in_flight"]
    assert all(r["repeats"][0]["stop_reason"] != "fit_end" for r in results(tmp_path).values())
    summary = run(tmp_path, "--model.max_steps", "6", "--model.reward_threshold", "null", *reward)
    assert summary["prompts"] == 6 and summary["in_flight"] == []
    assert all(r["repeats"][0]["steps"] == 6 for r in results(tmp_path).values())


def test_fast_dev_run_writes_nothing(tmp_path):
    run(tmp_path, "--trainer.fast_dev_run", "true")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_second_run_on_a_folder_in_use_is_refused_and_a_dead_owners_lock_is_taken_over(tmp_path, capsys):
    lock = RunLock(tmp_path)
    lock.acquire()
    err = refused(capsys, tmp_path, "--model.max_steps", "1")
    assert f"{tmp_path} is in use by another run (pid {os.getpid()}" in err
    lock.release()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = {**lock.owner, "pid": int(dead.stdout)}
    (tmp_path / ".lock").write_text(json.dumps(owner))  # left by a process that was killed
    assert run(tmp_path, "--model.max_steps", "1")["prompts"] == 6
    assert not (tmp_path / ".lock").exists()
    with pytest.raises(RunMismatch):  # a held lock refuses a second holder in the same process too
        RunLock(tmp_path).acquire() or RunLock(tmp_path).acquire()


def test_a_prompt_folder_appears_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError):
        run(tmp_path, "--model.max_steps", "3", "--model.reward", "tests.helpers.FailingReward",
            "--model.reward.fail_on", "8", "--data.repeats", "2", "--data.batch_size", "1")
    for folder in tmp_path.iterdir():
        if folder.is_dir() and not folder.name.startswith(".") and folder.name != "tensorboard":
            assert (folder / "result.json").is_file()  # a visible prompt folder is complete
            assert len(list((folder / "samples").iterdir())) == 2


def test_a_run_killed_between_two_writes_is_finished_by_the_next_one(tmp_path, monkeypatch):
    """Killed after a prompt's last repeat was staged but before its folder was renamed into place:
    the next run completes that folder instead of losing or redoing the prompt."""
    from milr.results import write as writer

    real_rename = os.rename

    def killed(src, dst):
        raise SystemExit("killed")  # stands in for SIGKILL at the worst moment

    monkeypatch.setattr(writer.os, "rename", killed)
    with pytest.raises(SystemExit):
        run(tmp_path, "--model.max_steps", "1", "--data.prompts", "[a red apple, a blue car]", "--data.batch_size", "1")
    monkeypatch.setattr(writer.os, "rename", real_rename)
    assert list((tmp_path / ".partial").iterdir()) and not results(tmp_path)
    summary = run(tmp_path, "--model.max_steps", "1", "--data.prompts", "[a red apple, a blue car]", "--data.batch_size", "1")
    assert summary["prompts"] == 2 and sorted(results(tmp_path)) == ["00000", "00001"]
    assert not list((tmp_path / ".partial").iterdir())
    for folder in ("00000", "00001"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["initial", "metadata.jsonl", "result.json", "samples", "trace"]
