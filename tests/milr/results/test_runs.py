"""``milr.results.runs`` reads the run-folder contract: today's flat files and the per-repeat ones."""

from __future__ import annotations

import json

import pytest

import train_free_runner
from milr.results import export, report
from milr.results.runs import read_run
from tests.milr.results.test_export import compbench_listing
from tests.run_folders import FakePrompt, Step, fake_run


def test_per_repeat_files_and_result_lists_are_read_per_repeat(tmp_path):
    prompt = FakePrompt("color_00012", {"prompt": "a red apple", "category": "color"}, [[Step(0.2, "a"), Step(0.7, "b")], [Step(0.4, "c")]],
                        monitors=[{"clip": {"initial": 0.3, "selected": 0.2}}, {"clip": {"initial": 0.5, "selected": 0.5}}])
    run = read_run(fake_run(tmp_path, [prompt]))
    [p] = run.prompts
    assert p.key == "color_00012" and p.text == "a red apple" and run.method == "milr"
    first, second = p.repeats
    assert first.initial.name == "0000.png" and first.initial.parent.name == "initial"
    assert [s["text"] for s in first.trace] == ["a", "b"] and [s["text"] for s in second.trace] == ["c"]
    assert (first.selected_reward, first.initial_text, first.text) == (0.7, "a", "b")
    assert second.monitors == {"clip": {"initial": 0.5, "selected": 0.5}}
    assert first.selected_step["step"] == 1


def test_selected_step_breaks_ties_by_the_select_rule_and_otherwise_says_it_cannot(tmp_path):
    steps = [Step(0.5, details={"v": 1}), Step(0.2), Step(0.5, details={"v": 2})]
    run = read_run(fake_run(tmp_path / "best", [FakePrompt("00000", {"prompt": "x"}, [steps])]))
    assert run.prompts[0].repeats[0].selected_details == {"v": 1}  # config says select: best -> first maximum
    (tmp_path / "best" / "config.yaml").write_text("model:\n  select: last\n")
    assert read_run(tmp_path / "best").prompts[0].repeats[0].selected_details == {"v": 2}
    (tmp_path / "best" / "config.yaml").unlink()
    assert read_run(tmp_path / "best").prompts[0].repeats[0].selected_step is None  # ambiguous: no guess


def test_missing_fields_are_none_and_bad_folders_are_clear_errors(tmp_path):
    fake_run(tmp_path / "run", [FakePrompt("00000", {"prompt": "x"}, [[Step(0.5)]], method=None)])
    result = tmp_path / "run" / "00000" / "result.json"
    record = json.loads(result.read_text())
    del record["reward_calls"], record["method"]
    result.write_text(json.dumps(record))
    run = read_run(tmp_path / "run")
    assert run.prompts[0].repeats[0].get("reward_calls") is None and run.method is None
    (tmp_path / "run" / "00000" / "samples" / "0001.png").write_bytes(b"")
    with pytest.raises(ValueError, match="1 repeat"):
        read_run(tmp_path / "run")
    with pytest.raises(ValueError, match="no finished prompt"):
        read_run(tmp_path / "run" / "00000" / "samples")


def test_the_real_runner_output_reads_back_exports_and_reports(tmp_path):
    train_free_runner.main(["--output_dir", str(tmp_path), "--model.max_steps", "2", "--model.reward.init_args.calibration_samples", "16",
                            "--trainer.enable_progress_bar", "false"])
    run = read_run(tmp_path)
    assert [p.key for p in run.prompts] == [f"{i:05d}" for i in range(6)]
    for p in run.prompts:
        [r] = p.repeats
        assert r.sample.is_file() and r.initial == r.sample.parent.parent / "initial" / "0000.png" and 1 <= len(r.trace) <= 3
        assert r.selected_step is not None and r.selected_step["reward"] == r.selected_reward
        assert r.initial_text == r.trace[0]["text"] and r.initial_reward == r.trace[0]["reward"]
    export.export_t2i_compbench(run, tmp_path / "compbench")
    assert [text for _, text, _ in compbench_listing(str(tmp_path / "compbench"))] == [p.text for p in run.prompts]
    page = report.main([str(tmp_path)]).read_text()
    assert page.count("<img ") == 12 and page.count("<polyline") == 3  # initial + selected of 6 prompts; per step two curves, per reward call one
    assert "<td>ColorReward</td>" in page  # the reward class, read from config.yaml
