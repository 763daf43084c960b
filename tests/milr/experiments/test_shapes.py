"""The Shapes experiment's statistics (milr.experiments.shapes_report) on fabricated run folders
whose answers are known, and the harness's budget arithmetic and prompt subsets."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from milr.results import report
from milr.experiments import shapes, shapes_report as stats
from milr.methods import reward_call_budget, step_budget
from milr.results.runs import Repeat
from milr.shapes.prompts import plan_text, scene
from tests.run_folders import FakePrompt, Step, fake_run

SINGLE = {"tag": "single_object", "include": [{"class": "cross", "count": 1}], "prompt": "a photo of a cross"}
KNOWLEDGE = {**SINGLE, "tag": "knowledge"}
RIGHT = plan_text(scene(SINGLE, random.Random(0)))
WRONG = plan_text([])


def repeat(trace: list[dict]) -> Repeat:
    return Repeat(index=0, sample=Path("x.png"), initial=None, trace=trace, record={})


def line(reward: float, calls: int, samples: list[float] | None = None) -> dict:
    return {"reward": reward, "reward_calls": calls} | ({} if samples is None else {"sample_rewards": samples})


def test_accuracy_at_a_budget_counts_every_scored_image_in_call_order():
    # rloo-like: stage 0 scores 3 images (the third correct), then 2 per step
    rloo = repeat([line(1.0, 3, [0.0, 0.0, 1.0]), line(0.0, 5, [0.0, 0.0])])
    assert [stats.accuracy_at(rloo, b, "best") for b in (1, 2, 3, 5, None)] == [0.0, 0.0, 1.0, 1.0, 1.0]
    # select last: the latest image within the budget
    assert [stats.accuracy_at(rloo, b, "last") for b in (2, 3, 5)] == [0.0, 1.0, 0.0]
    assert stats.accuracy_at(repeat([]), 4, "best") is None


def test_a_trace_whose_call_count_disagrees_with_its_samples_is_refused():
    with pytest.raises(ValueError, match="reward calls"):
        stats.call_rewards(repeat([line(0.0, 1), line(1.0, 3)]))  # 2 calls claimed, 1 sample listed


def official(run: Path, scores: dict[tuple[str, int], tuple[str, float]]) -> None:
    """``official/shapes_geneval.json`` as ``python -m rewards.shapes`` writes it, for given scores."""
    groups: dict[str, list[float]] = {}
    for group, score in scores.values():
        groups.setdefault(group, []).append(score)
    means = {g: {"score": sum(v) / len(v), "n": len(v)} for g, v in groups.items()}
    images = [{"key": k, "repeat": r, "group": g, "score": s} for (k, r), (g, s) in scores.items()]
    data = {"benchmark": "shapes_geneval", "source": "fabricated", "groups": means, "overall": means["single_object"]["score"], "images": images}
    (run / "official").mkdir(parents=True, exist_ok=True)
    (run / "official" / "shapes_geneval.json").write_text(json.dumps(data))


def fabricate(tmp_path: Path, name: str, correct: list[bool], text: str = "think") -> report.RunView:
    """Four single-object prompts and one knowledge prompt, 2 seeds; ``correct`` per (prompt, seed)
    in order. The trace: one wrong image, then the outcome (2 reward calls)."""
    metas = [SINGLE] * 4 + [KNOWLEDGE]
    prompts, scores = [], {}
    for i, meta in enumerate(metas):
        key = f"{i:05d}"
        outcomes = correct[2 * i : 2 * i + 2]
        prompts.append(FakePrompt(key, meta, [[Step(0.0, "think", calls=1), Step(float(ok), text, calls=2)] for ok in outcomes]))
        scores.update({(key, r): (meta["tag"], float(ok)) for r, ok in enumerate(outcomes)})
    run = fake_run(tmp_path / name, prompts)
    official(run, scores)
    return report.load(run)


def test_accuracy_table_pairs_by_prompt_and_seed_and_keeps_knowledge_apart(tmp_path):
    views = {
        "best_of_n": fabricate(tmp_path, "best_of_n", [True, False] * 4 + [False, False]),
        "milr": fabricate(tmp_path, "milr", [True, True] * 4 + [True, True]),
    }
    header, rows = stats.accuracy_table(views, ("best_of_n", "base"), resamples=200)
    assert header[-2:] == ["GenEval − best_of_n [95 %]", "knowledge − best_of_n [95 %]"]  # no base run: no base columns
    by_name = {r[0]: dict(zip(header, r)) for r in rows}
    assert by_name["best_of_n"]["GenEval − best_of_n [95 %]"] == "—"
    # every single-object prompt gains half a correct image per seed; the knowledge prompt one
    assert by_name["milr"]["GenEval − best_of_n [95 %]"] == "+0.500 [+0.500, +0.500]"
    assert by_name["milr"]["knowledge − best_of_n [95 %]"] == "+1.000"  # one prompt: no interval
    assert by_name["milr"]["single_object"] == "1.000" and by_name["best_of_n"]["images"] == "10"


def test_curve_at_the_whole_budget_is_the_selected_accuracy_and_differences_are_paired(tmp_path):
    views = {"best_of_n": fabricate(tmp_path, "best_of_n", [False] * 10), "milr": fabricate(tmp_path, "milr", [True] * 10)}
    (header, rows), (_, diffs) = stats.curve_table(views, "best_of_n", resamples=200)
    milr = dict(zip(header, rows[1]))
    assert milr["1 calls"] == "0.000" and milr["2 calls"] == milr["16 calls"] == milr["whole budget"] == "1.000"
    assert milr["most calls made"] == "2"
    assert diffs == [["milr", "+0.000 [+0.000, +0.000]", *["+1.000 [+1.000, +1.000]"] * 4]]
    assert stats.curve_series(views)[1] == ("milr", [1, 2], [0.0, 1.0])


def test_text_table_counts_changed_texts_and_what_the_change_did_to_the_plan(tmp_path):
    prompts = [
        FakePrompt("00000", SINGLE, [[Step(0.0, WRONG), Step(1.0, RIGHT)]]),  # fixed
        FakePrompt("00001", SINGLE, [[Step(0.0, RIGHT), Step(1.0, WRONG)]]),  # broken
        FakePrompt("00002", SINGLE, [[Step(1.0, RIGHT)]]),  # unchanged
    ]
    run = fake_run(tmp_path / "milr", prompts)
    official(run, {(f"{i:05d}", 0): ("single_object", 1.0) for i in range(3)})
    header, rows = stats.text_table({"milr": report.load(run)})
    assert dict(zip(header, rows[0])) == {
        "method": "milr", "images": "3", "think text changed": "2 (0.667)", "plan right before": "0.500",
        "plan right after": "0.500", "fixed": "1", "broken": "1", "image right": "1.000",
    }


def test_identity_compares_selected_image_bytes_and_separates_stage_zero_failures(tmp_path):
    a = fake_run(tmp_path / "a" / "run", [FakePrompt("00000", SINGLE, [[Step(0.0), Step(1.0)], [Step(1.0)]])])
    b = fake_run(tmp_path / "b" / "run", [FakePrompt("00000", SINGLE, [[Step(0.0), Step(1.0)], [Step(1.0)]])])
    c = stats.identity(report.load(a), report.load(b))
    assert c == {"pairs": 2, "identical": 2, "stage 0 wrong": 1, "identical, stage 0 wrong": 1}
    (b / "00000" / "samples" / "0000.png").write_bytes(b"other")
    assert stats.identity(report.load(a), report.load(b))["identical, stage 0 wrong"] == 0


def test_time_table_sums_every_session_of_the_tensorboard_timers(tmp_path):
    run = fake_run(tmp_path / "milr", [FakePrompt(f"{i:05d}", SINGLE, [[Step(1.0)]]) for i in range(2)])
    (run / "runs.jsonl").write_text('{"seconds": 3.0}\n{"seconds": 1.0}\n')
    for session in range(2):  # a resumed run logs its steps from 0 again, into the same folder
        with SummaryWriter(str(tmp_path / "tb" / "milr"), filename_suffix=f".{session}") as writer:
            for step in range(2):
                for name, value in {"step": 1.0, "decode": 0.5, "think": 0.125, "reward": 0.125, "update": 0.25}.items():
                    writer.add_scalar(f"time/{name}_s", value, step)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "milr.json").write_text('{"wall_s": 9.0, "cpu_s": 5.0}')
    header, rows = stats.time_table({"milr": report.load(run)}, tmp_path / "tb", tmp_path / "logs")
    assert dict(zip(header, rows[0])) == {
        "method": "milr", "images": "2", "CPU s / image": "2.500", "wall s / image": "2.000", "steps s": "2.000", "think": "0.250", "image": "0.750",
        "reward": "0.250", "update": "0.500", "other": "0.250", "latency s (batch)": "1.50",
    }


def test_every_main_run_stays_within_the_budget_and_rloo_uses_the_most_of_it():
    assert shapes.rloo_steps(16) == 6 and reward_call_budget(6, "rloo", 2) == 15
    with pytest.raises(ValueError, match="too small"):
        shapes.rloo_steps(2)
    for spec in shapes.main_specs(15):
        options = dict(zip(spec.options[::2], spec.options[1::2]))
        method = options.get("--model.method") or ("base" if "base" in spec.name else "best_of_n" if "best" in spec.name else "milr")
        estimator, k = ("rloo", 2) if "rloo" in spec.name else ("reference", 1)
        steps = step_budget(method, int(options.get("--model.max_steps", 15)), estimator, k, None)
        calls = reward_call_budget(steps, estimator, k) if method != "best_of_n" else steps + 1
        assert calls <= 16, spec


def test_ablations_change_one_setting_each_and_skip_the_default_value():
    model = {"text_ratio": 0.2, "image_ratio": 0.0625, "lr": 0.03, "step_order": "joint"}
    specs = {s.name: s for s in shapes.ablation_specs(model)}
    assert "text_ratio_0.2" not in specs and "lr_0.03" not in specs and "image_ratio_0.02" in specs
    assert set(specs) >= {"default", "order_text_image", "order_image_text", "order_interleaved_text_image", "best_of_n", "base"}
    assert specs["lr_0.1"].options == ("--model.mode", "both", "--model.lr", "0.1")


def test_per_tag_subset_keeps_the_first_prompts_of_each_tag_in_file_order(tmp_path):
    source = tmp_path / "all.jsonl"
    lines = [json.dumps({"tag": t, "n": i}) for i, t in enumerate(["a", "a", "a", "b", "b"])]
    source.write_text("\n".join(lines) + "\n")
    subset = shapes.per_tag_subset(source, 2, tmp_path / "sub" / "p.jsonl")
    assert [json.loads(x)["n"] for x in subset.read_text().splitlines()] == [0, 1, 3, 4]


def test_direction_runs_pair_each_estimator_with_its_anti_reward_twin_on_a_graded_reward_without_threshold():
    specs = {s.name: s for s in shapes.direction_specs(15)}
    assert set(specs) == {"best_of_n", "milr_both", "anti_reward", "milr_rloo", "anti_reward_rloo"}
    main = {s.name: s for s in shapes.main_specs(15)}
    for name, spec in specs.items():  # the main run's settings, then the graded reward and no threshold
        assert spec.fragments == main[name].fragments and spec.options == (*main[name].options, *shapes.DIRECTION_OPTIONS)
    model = shapes.resolved_config(list(shapes.DIRECTION_OPTIONS))["model"]
    assert model["reward"]["init_args"]["soft"] is True and model["reward_threshold"] is None


def test_direction_table_compares_towards_r_with_towards_one_minus_r_paired_by_prompt(tmp_path):
    def run(name: str, steps: list[float], correct: bool) -> report.RunView:
        prompts = [FakePrompt(f"{i:05d}", SINGLE, [[Step(0.0), *(Step(r) for r in steps)]]) for i in range(3)]
        folder = fake_run(tmp_path / name, prompts)
        official(folder, {(f"{i:05d}", 0): ("single_object", float(correct)) for i in range(3)})
        return report.load(folder)

    views = {"milr_rloo": run("milr_rloo", [0.5, 1.0], True), "anti_reward_rloo": run("anti_reward_rloo", [0.25, 0.0], False)}
    header, rows = stats.direction_table(views, [("milr_rloo", "anti_reward_rloo"), ("milr_both", "anti_reward")], resamples=200)
    table = {r[1]: dict(zip(header, r)) for r in rows}
    assert len(rows) == 3  # the pair without runs is left out
    after = table["reward after an update"]
    assert (after["towards R"], after["towards 1 − R"], after["difference [95 %]"], after["prompts"]) == ("0.750", "0.125", "+0.625 [+0.625, +0.625]", "3")
    assert table["reward at the last step"]["difference [95 %]"] == "+1.000 [+1.000, +1.000]"
    assert table["accuracy (selected)"]["difference [95 %]"] == "+1.000 [+1.000, +1.000]"


def test_the_readme_table_is_rewritten_between_its_markers_from_the_runs(tmp_path):
    fabricate(tmp_path / "main", "best_of_n", [True, False] * 4 + [False, False])
    fabricate(tmp_path / "main", "milr_both", [True, True] * 4 + [True, True])
    (tmp_path / "main" / "logs").mkdir()
    (tmp_path / "main" / "logs" / "milr_both.json").write_text('{"wall_s": 9.0, "cpu_s": 5.0}')
    begin, end = shapes.README_MARKERS
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{begin}| stale |\n{end}\nafter\n")
    specs = [shapes.Spec("best_of_n", ()), shapes.Spec("milr_both", ())]
    shapes.write_readme_table(specs, tmp_path / "main", resamples=200, readme=readme)
    text = readme.read_text()
    assert text.startswith(f"intro\n{begin}| method |") and text.endswith(f"{end}\nafter\n") and "stale" not in text
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert "| method | GenEval mean | − best_of_n [95 %] | reward calls (mean / most) | CPU s / image |" in text  # no best_of_n_think run: no column
    assert rows[shapes.HEADLINE["milr_both"]].endswith("| 1.00 | +0.500 [+0.500, +0.500] | 2.0 / 2 | 0.50 |")
    assert rows[shapes.HEADLINE["best_of_n"]].endswith("| — | 2.0 / 2 | n/a |")  # no CPU record: no figure made up
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="shapes-table"):
        shapes.write_readme_table(specs, tmp_path / "main", resamples=200, readme=readme)
