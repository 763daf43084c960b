"""train_free_runner end to end on the tiny demo: output layout, TensorBoard scalars, resume,
and every YAML in configs/ parsing against the CLI."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train_free_runner
from milr.results.runs import read_run

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model.max_steps", "3", "--model.reward.init_args.calibration_samples", "16", "--trainer.enable_progress_bar", "false"]


def run(out: Path, *extra: str) -> dict:
    return train_free_runner.main(["--output_dir", str(out), *FAST, *extra])


def test_demo_writes_the_geneval_layout_traces_summary_and_tensorboard(tmp_path):
    summary = run(tmp_path)
    folders = sorted(p for p in tmp_path.iterdir() if p.name.isdigit())
    assert [p.name for p in folders] == [f"{i:05d}" for i in range(6)]
    for folder in folders:
        meta = json.loads((folder / "metadata.jsonl").read_text())
        assert meta["prompt"]
        assert Image.open(folder / "samples" / "0000.png").size == (32, 32)
        assert Image.open(folder / "initial" / "0000.png").size == (32, 32)
        trace = [json.loads(line) for line in (folder / "trace" / "0000.jsonl").read_text().splitlines()]
        assert [t["step"] for t in trace] == list(range(len(trace))) and 1 <= len(trace) <= 4
        assert all({"reward", "text", "seconds"} <= set(t) for t in trace)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary and summary["prompts"] == 6
    assert set(summary) == {
        "prompts", "images", "initial_reward_mean", "final_reward_mean", "selected_reward_mean", "best_reward_mean",
        "mean_steps", "in_flight", "seconds_this_run", "seconds_all_runs", "reward_retries", "failed",
    }
    assert summary["failed"] == [] and not (tmp_path / "failed").exists()
    assert summary["selected_reward_mean"] == summary["best_reward_mean"]  # select: best
    assert summary["best_reward_mean"] >= summary["initial_reward_mean"]
    assert "model:" in (tmp_path / "config.yaml").read_text()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "images": 0}).Reload()
    steps = [e.step for e in events.Scalars("reward/mean")]
    assert steps == sorted(set(steps)) and len(steps) >= 4
    assert len(events.Scalars("reward/prompt_00000")) >= 2 and events.Images("images/step")


def test_no_config_runs_the_demo_and_a_command_line_prompt_source_replaces_the_configs():
    demo = ["--config", str(train_free_runner.DEMO_CONFIG)]
    assert train_free_runner.with_defaults(["--output_dir", "x"]) == [*demo, "--output_dir", "x"]
    assert train_free_runner.with_defaults(["--data.path=p.txt"]) == [*demo, "--data.path=p.txt", "--data.prompts", "null"]
    given = ["--config", "c.yaml", "--data.prompts", "[a cat]"]
    assert train_free_runner.with_defaults(given) == [*given, "--data.path", "null"]
    both = ["--config", "c.yaml", "--data.path", "p.txt", "--data.prompts", "[a cat]"]
    assert train_free_runner.with_defaults(both) == both  # both given: the data module's clear error


def test_a_prompt_file_on_the_command_line_replaces_the_demo_prompts(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red apple\na blue car\n")
    summary = run(tmp_path / "out", "--data.path", str(prompts))
    assert summary["prompts"] == 2
    assert json.loads((tmp_path / "out" / "00001" / "metadata.jsonl").read_text())["prompt"] == "a blue car"


def test_the_run_shows_no_warnings_a_user_cannot_act_on(tmp_path, monkeypatch, recwarn):
    monkeypatch.setattr("sys.argv", ["train_free_runner.py", "--output_dir", str(tmp_path)])  # as from a shell
    run(tmp_path)
    messages = [str(w.message) for w in recwarn]
    assert not [m for m in messages if "LeafSpec" in m or "args parameter" in m]
    lightning_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    record = lambda msg: logging.LogRecord(lightning_log.name, logging.INFO, __file__, 1, msg, None, None)  # noqa: E731
    assert not lightning_log.filter(record("💡 Tip: ... try installing [litlogger](https://pypi.org/project/litlogger/)"))
    assert lightning_log.filter(record("GPU available: False, used: False"))  # Lightning's own info stays


def test_interrupted_run_resumes_without_redoing_finished_prompts(tmp_path, monkeypatch):
    crashing = ["--model.reward", "tests.helpers.CrashingReward", "--data.batch_size", "1"]
    monkeypatch.setenv("MILR_TEST_CRASH_ON", "6")
    with pytest.raises(RuntimeError, match="reward server went away"):
        run(tmp_path, *crashing)
    monkeypatch.delenv("MILR_TEST_CRASH_ON")
    done = sorted(p.name for p in tmp_path.glob("*/result.json"))
    assert 1 <= len(done) < 6  # some prompts were written before the crash, some were not
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/samples/0000.png")}
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no partial files
    summary = run(tmp_path, *crashing)
    assert summary["prompts"] == 6
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # finished prompts were not redone
    assert run(tmp_path, *crashing) == {}  # a third run finds nothing to do (and does not trip on config.yaml)


def test_skip_lists_a_failed_prompt_and_a_rerun_with_the_reward_back_completes_it(tmp_path):
    outage = tmp_path / "outage.json"  # the reward server is down for prompt 2 while this file exists
    outage.write_text("[2]")
    out = tmp_path / "out"
    flaky = ["--model.reward", "tests.helpers.UnreliableReward", "--model.reward.outage", str(outage), "--data.batch_size", "1",
             "--model.on_reward_failure", "skip", "--model.reward_retries", "1", "--model.reward_backoff", "0"]
    summary = run(out, *flaky)
    assert summary["prompts"] == 5 and summary["reward_retries"] == 1  # prompt 2: one retry, then failed
    [failed] = summary["failed"]
    assert (failed["uid"], failed["index"], failed["step"]) == ("00002#0", 2, 0) and "TransientRewardError: reward server went away" in failed["reason"]
    record = json.loads((out / "failed" / "00002#0.json").read_text())
    assert {k: record[k] for k in failed} == failed and record["metadata"]["prompt"] == failed["prompt"]
    assert not (out / "00002").exists()  # a failed prompt is not written as complete
    outage.unlink()  # the server is back: the same command retries the failed prompt only
    summary = run(out, *flaky)
    assert summary["prompts"] == 6 and summary["failed"] == [] and summary["reward_retries"] == 0
    assert (out / "00002" / "result.json").is_file() and not list((out / "failed").iterdir())
    assert [json.loads(line)["prompts_written"] for line in (out / "runs.jsonl").read_text().splitlines()] == [5, 1]


@pytest.mark.parametrize(
    "config",
    sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.yaml")),
)
def test_every_config_parses_against_the_cli(config, capsys):
    args = ["--config", str(ROOT / config)]
    if config.startswith(("configs/rewards/", "configs/presets/", "configs/compare/")):  # fragments: on a main config
        args = ["--config", str(ROOT / "configs" / "tiny.yaml"), *args]
    with pytest.raises(SystemExit) as exit_:
        train_free_runner.main([*args, "--print_config"])
    assert exit_.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "reward:" in printed and "backbone:" in printed


def test_tensorboard_root_gives_each_run_its_own_folder_and_refuses_a_name_clash(tmp_path):
    root = tmp_path / "tb"
    run(tmp_path / "a" / "milr", "--tensorboard_root", str(root))
    events = EventAccumulator(str(root / "milr"), size_guidance={"scalars": 0}).Reload()
    assert len(events.Scalars("reward/mean")) >= 4 and not (tmp_path / "a" / "milr" / "tensorboard").exists()
    logger = train_free_runner.tensorboard_logger(tmp_path / "a" / "milr", str(root))  # the same run again: resumes
    assert Path(logger.log_dir) == root / "milr"
    with pytest.raises(train_free_runner.UsageError, match="already logs the run in"):
        train_free_runner.tensorboard_logger(tmp_path / "b" / "milr", str(root))


@pytest.mark.parametrize("order", ["text_image", "image_text", "interleaved_text_image"])
def test_each_ablation_step_order_runs_end_to_end_through_the_runner(tmp_path, order):
    summary = run(tmp_path, "--model.step_order", order, "--model.reward_threshold", "null",
                  "--data.prompts", "[a red apple, a blue car]", "--data.batch_size", "2")
    assert summary["prompts"] == 2 and summary["mean_steps"] == 3  # no threshold: the whole budget
    for folder in ("00000", "00001"):
        trace = [json.loads(line) for line in (tmp_path / folder / "trace" / "0000.jsonl").read_text().splitlines()]
        assert [t["step"] for t in trace] == [0, 1, 2, 3]  # one reward call per (sub-)step, all in the budget
        assert all(t["sample_rewards"] == [t["reward"]] for t in trace)
    assert "step_order: " + order in (tmp_path / "config.yaml").read_text()


@pytest.mark.parametrize(("method", "calls"), [("base", 1), ("best_of_n", 4), ("milr", 4), ("anti_reward", 4)])
def test_each_method_runs_end_to_end_and_records_its_cost_and_monitors(tmp_path, method, calls):
    monitor = "[{class_path: rewards.pixel.ColorReward, init_args: {calibrate: false}}]"
    summary = run(tmp_path, "--model.method", method, "--model.reward_threshold", "null", "--model.monitors", monitor,
                  "--data.prompts", "[a red apple, a blue car]", "--data.batch_size", "2")
    assert summary["prompts"] == 2 and summary["mean_steps"] == calls - 1  # no threshold: the whole budget
    for folder in ("00000", "00001"):
        record = json.loads((tmp_path / folder / "result.json").read_text())["repeats"][0]
        trace = [json.loads(line) for line in (tmp_path / folder / "trace" / "0000.jsonl").read_text().splitlines()]
        assert record["method"] == method and record["reward_calls"] == record["decoded_images"] == calls
        assert [t["reward_calls"] for t in trace] == list(range(1, calls + 1))  # cumulative, one image a step
        chosen = trace[record["selected_step"]]
        assert chosen["reward"] == record["selected_reward"] == max(t["reward"] for t in trace)
        assert record["initial_text"] == trace[0]["text"] and record["text"] == chosen["text"]
        assert set(record["monitors"]) == {"pixel_color"} and all(0 <= v <= 1 for v in record["monitors"]["pixel_color"].values())
    assert f"method: {method}" in (tmp_path / "config.yaml").read_text() and read_run(tmp_path).method == method
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    assert {"monitor/pixel_color/initial", "monitor/pixel_color/selected"} <= set(events.Tags()["scalars"])
