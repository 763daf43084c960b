"""The benchmark commands on a run folder: official summaries from the run's own reward details
(or re-scored images), printed and written to ``RUN_DIR/official/<benchmark>.json``."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from data.prompt import Prompt
from rewards import geneval, t2i_compbench, wise
from rewards.clip_score import CLIPScoreReward
from tests.rewards.tiny_models import tiny_clip
from tests.run_folders import FakePrompt, Step, fake_run


def official(run_dir, benchmark) -> dict:
    return json.loads((run_dir / "official" / f"{benchmark}.json").read_text())


def geneval_steps(tag: str, verdicts: list[bool]) -> list[Step]:
    return [Step(float(v), details={"tag": tag, "correct": v, "reason": "" if v else "no", "detections": {}}) for v in verdicts]


def test_geneval_from_details_is_the_official_summary_of_the_selected_images(tmp_path, capsys):
    meta = [{"tag": t, "include": [{"class": "cat", "count": 1}], "prompt": f"p{i}"} for i, t in enumerate(["single_object", "single_object", "counting"])]
    prompts = [
        FakePrompt("00000", meta[0], [geneval_steps("single_object", [False, True]), geneval_steps("single_object", [False])]),
        FakePrompt("00001", meta[1], [geneval_steps("single_object", [False]), geneval_steps("single_object", [False])]),
        FakePrompt("00002", meta[2], [geneval_steps("counting", [True]), geneval_steps("counting", [False, False])]),
    ]
    run = fake_run(tmp_path / "run", prompts)
    summary = geneval.main([str(run), "--from_details", "true", "--out", str(tmp_path / "results.jsonl")])
    assert summary.tasks == {"single_object": (1, 4), "counting": (1, 2)} and summary.overall == pytest.approx((0.25 + 0.5) / 2)
    written = official(run, "geneval")
    assert written["groups"] == {"single_object": {"score": 0.25, "n": 4}, "counting": {"score": 0.5, "n": 2}}
    assert written["overall"] == pytest.approx(0.375) and len(written["images"]) == 6
    rows = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert rows[0]["filename"].endswith("00000/samples/0000.png") and rows[0]["correct"] is True
    assert "Overall score (avg. over tasks): 0.37500" in capsys.readouterr().out


def test_from_details_refuses_a_run_its_benchmark_did_not_score(tmp_path):
    run = fake_run(tmp_path / "run", [FakePrompt("color_00000", {"prompt": "a red apple", "category": "color"}, [[Step(0.5, details={"colours": ["red"]})]])])
    with pytest.raises(ValueError, match="no T2I-CompBench scores"):
        t2i_compbench.main([str(run), "--from_details", "true"])
    unjudged = fake_run(tmp_path / "wise", [FakePrompt("wise_0001", {"Prompt": "x", "prompt_id": 1}, [[Step(0.5)]])])
    with pytest.raises(ValueError, match="carry no WISE judge scores"):
        wise.main([str(unjudged)])


def test_t2i_compbench_from_details_averages_each_category_over_all_images(tmp_path, capsys):
    def steps(category, scores):
        return [Step(s, details={"category": category, "score": s}) for s in scores]

    prompts = [
        FakePrompt("color_00000", {"prompt": "a red apple", "category": "color"}, [steps("color", [0.2, 0.6]), steps("color", [0.4])]),
        FakePrompt("spatial_00000", {"prompt": "a cat near a dog", "category": "spatial"}, [steps("spatial", [0.0]), steps("spatial", [0.75])]),
    ]
    run = fake_run(tmp_path / "run", prompts)
    out = t2i_compbench.main([str(run), "--from_details", "true"])
    assert out.groups == {"color": {"score": pytest.approx(0.5), "n": 2}, "spatial": {"score": pytest.approx(0.375), "n": 2}}
    assert out.overall is None and official(run, "t2i_compbench")["groups"]["color"]["n"] == 2
    printed = capsys.readouterr().out
    assert "color" in printed and "0.5000" in printed and "0.3750" in printed


def test_t2i_compbench_rescores_the_selected_images_with_the_official_rule(tmp_path):
    clip = tiny_clip(tmp_path / "clip", image_size=32, patch_size=16)
    prompts = [FakePrompt(f"non_spatial_{i:05d}", {"prompt": t, "category": "non_spatial"}, [[Step(0.1), Step(0.3)]]) for i, t in enumerate(["a man plays guitar", "a dog runs"])]
    run = fake_run(tmp_path / "run", prompts)
    out = t2i_compbench.main([str(run), "--clip_model", str(clip), "--device", "cpu"])
    reference = CLIPScoreReward(checkpoint=str(clip))
    images = [Image.open(run / p.key / "samples" / "0000.png").convert("RGB") for p in prompts]
    expected = reference.evaluate(images, [Prompt(p.metadata["prompt"], i) for i, p in enumerate(prompts)]).scores.tolist()
    assert [i.score for i in out.images] == pytest.approx(expected)
    assert out.groups["non_spatial"]["score"] == pytest.approx(sum(expected) / 2) and out.source.startswith("re-scored")


def test_wise_command_sums_a_run_folders_judge_rows_as_calculate_py(tmp_path, capsys):
    def judged(pid, c, r, a):
        details = {"prompt_id": pid, "judge": "gpt", "consistency": c, "realism": r, "aesthetic_quality": a}
        return FakePrompt(f"wise_{pid:04d}", {"Prompt": "x", "prompt_id": pid}, [[Step((0.7 * c + 0.2 * r + 0.1 * a) / 2, details=details)]])

    run = fake_run(tmp_path / "run", [judged(1, 2.0, 1.0, 0.0), judged(2, 0.0, 0.0, 0.0), judged(950, 1.0, 1.0, 1.0)])
    assert wise.main([str(run)]) == 0
    printed = capsys.readouterr().out
    assert "CULTURE    0.40  (n=2)" in printed and "CHEMISTRY  0.50  (n=1)" in printed and "997 prompt_ids missing" in printed
    written = official(run, "wise")
    assert written["overall"] is None and written["groups"]["CULTURE"] == {"score": pytest.approx(0.4), "n": 2}
    assert [(i["key"], i["group"]) for i in written["images"]] == [("wise_0001", "CULTURE"), ("wise_0002", "CULTURE"), ("wise_0950", "CHEMISTRY")]
