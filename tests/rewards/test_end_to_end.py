"""Every reward YAML in configs/rewards/ runs end to end through ``train_free_runner`` on the tiny
random Janus, exactly as a user combines them (``--config configs/tiny.yaml --config
configs/rewards/<name>.yaml``), with the checkpoint options pointed at tiny random checkpoints
built here (``tests.rewards.tiny_models``).

Each run: 1 optimisation step, a few prompts from a benchmark-format prompt file; it must finish,
write ``result.json`` (rewards in [0, 1]) and ``trace.jsonl`` (the reward's details on every
step) for every prompt, and ``summary.json`` equal to the returned summary.

Judges: the remote WISE judge talks HTTP to a fake OpenAI-compatible server on 127.0.0.1. The
local Qwen2.5-VL judges (UnifiedReward, WISE local, the mixed reward's UnifiedReward part) run
the tiny random Qwen2.5-VL for real; its free answer parses as no score, and the runs that let it
answer must fail with the reward's parse error. The runs that must finish script the answer at
the lowest level: see ``script_qwen_answer``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import PreTrainedTokenizerFast, Qwen2_5_VLForConditionalGeneration

import train_free_runner
from milr.results import report
from rewards.compbench_rules import attribute_score
from rewards.geneval import COLORS
from rewards.judges import JudgeParseError
from rewards.mixed import mixed_score
from tests.rewards.test_judges import FakeChatServer, ok
from tests.rewards.tiny_models import (
    tiny_blip, tiny_clip, tiny_dpt, tiny_git, tiny_grounding_dino, tiny_mask2former, tiny_qwen3_vl, tiny_qwen_vl,
)

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--model.max_steps", "1", "--trainer.enable_progress_bar", "false"]
KEY = "sk-e2e-DO-NOT-LEAK-9f8e7d6c5b4a"

BENCH, COW = {"class": "bench", "count": 1}, {"class": "cow", "count": 1}
GENEVAL = [
    {"tag": "single_object", "include": [BENCH], "prompt": "a photo of a bench"},
    {"tag": "colors", "include": [{**BENCH, "color": "red"}], "prompt": "a photo of a red bench"},
    {"tag": "single_object", "include": [COW], "prompt": "a photo of a cow"},
]
WISE = [
    {"Prompt": "Traditional food of the Mid-Autumn Festival", "Explanation": "This refers to mooncakes.",
     "Category": "Cultural knowledge", "Subcategory": "Festival", "prompt_id": 1},
    {"Prompt": "The tallest building in Seattle", "Explanation": "The Space Needle.",
     "Category": "Spatial", "Subcategory": "Landmark", "prompt_id": 600},
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> dict[str, str]:
    """Every tiny checkpoint the reward YAMLs point at, built once for the module."""
    root = tmp_path_factory.mktemp("tiny_rewards")
    return {
        "bench_detector": str(tiny_mask2former(root / "bench_detector", always="bench")),  # every query: a whole-image bench
        "clip": str(tiny_clip(root / "clip")),
        "blip": str(tiny_blip(root / "blip")),
        "gdino": str(tiny_grounding_dino(root / "gdino")),
        "dpt": str(tiny_dpt(root / "dpt")),
        "git": str(tiny_git(root / "git")),
        "qwen": str(tiny_qwen_vl(root / "qwen")),
        "qwen3": str(tiny_qwen3_vl(root / "qwen3")),
    }


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def run(out: Path, reward: str, prompt_file: str, *overrides: str) -> dict[str, Any]:
    """``train_free_runner`` on the demo config + ``configs/rewards/<reward>.yaml``, prompts from ``prompt_file``."""
    configs = ["--config", str(ROOT / "configs" / "tiny.yaml"), "--config", str(ROOT / "configs" / "rewards" / f"{reward}.yaml")]
    data = ["--data.prompts", "null", "--data.path", prompt_file]
    return train_free_runner.main([*configs, "--output_dir", str(out), *FAST, *data, *overrides])


def finished_run(out: Path, summary: dict[str, Any], n: int, class_path: str, detail_keys: set[str]) -> list[list[dict]]:
    """The checks every run shares; returns each prompt's trace (one dict per step)."""
    assert summary["prompts"] == n and json.loads((out / "summary.json").read_text()) == summary
    assert f"class_path: {class_path}" in (out / "config.yaml").read_text()  # the YAML chose the reward
    traces = []
    folders = sorted(p.parent for p in out.glob("*/result.json"))
    assert len(folders) == n
    for folder in folders:
        result = json.loads((folder / "result.json").read_text())["repeats"][0]
        assert all(0.0 <= result[k] <= 1.0 for k in ("initial_reward", "final_reward", "best_reward"))
        trace = [json.loads(line) for line in (folder / "trace" / "0000.jsonl").read_text().splitlines()]
        assert [t["step"] for t in trace] == list(range(len(trace))) and 1 <= len(trace) <= 2
        assert trace[0]["reward"] == result["initial_reward"] and max(t["reward"] for t in trace) == result["best_reward"]
        for step in trace:
            assert 0.0 <= step["reward"] <= 1.0 and detail_keys <= set(step["details"]), step["details"]
        traces.append(trace)
    return traces


def script_qwen_answer(monkeypatch, qwen: str, answer: str) -> list[int]:
    """Make the tiny Qwen2.5-VL judge answer ``answer`` (a scripted judge, for runs that must finish).

    Patched at the lowest level, ``Qwen2_5_VLForConditionalGeneration.generate``: the real
    ``generate`` still runs on the real inputs the judge built (chat template, image tokens,
    pixel values, M-RoPE ids) for one greedy step; then its new tokens are swapped for the
    answer's token ids + ``<|im_end|>``, which the judge decodes and the reward parses as usual.
    Returns the batch size of every call.
    """
    tokenizer = PreTrainedTokenizerFast.from_pretrained(qwen)
    answer_ids = torch.tensor(tokenizer.encode(answer) + [tokenizer.eos_token_id])
    real_generate = Qwen2_5_VLForConditionalGeneration.generate
    calls: list[int] = []

    def generate(self, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        step = real_generate(self, input_ids=input_ids, **{**kwargs, "max_new_tokens": 1})
        assert step.shape == (len(input_ids), input_ids.shape[1] + 1)
        calls.append(len(input_ids))
        return torch.cat([input_ids, answer_ids.expand(len(input_ids), -1)], dim=1)

    monkeypatch.setattr(Qwen2_5_VLForConditionalGeneration, "generate", generate)
    return calls


# --------------------------------------------------------------------------- detector / VQA rewards
def test_geneval_yaml_judges_tiny_detector_output_by_the_official_rules(ckpt, tmp_path):
    """Mask2Former (every query: a whole-image bench) + CLIP colours through the runner: the bench
    prompt is correct (1.0 stops it at once), the cow prompt is not, the red bench is correct iff
    the tiny CLIP calls the bench red."""
    prompts = write_jsonl(tmp_path / "evaluation_metadata.jsonl", GENEVAL)
    summary = run(tmp_path / "out", "geneval", prompts, "--model.reward.init_args.detector", ckpt["bench_detector"],
                  "--model.reward.init_args.clip_model", ckpt["clip"], "--model.reward.init_args.detector_size", "[64, 96]")
    keys = {"tag", "correct", "reason", "fraction", "detections", "colors"}
    bench, red_bench, cow = finished_run(tmp_path / "out", summary, 3, "rewards.geneval.GenEvalReward", keys)
    assert [t["reward"] for t in bench] == [1.0] and bench[0]["details"]["correct"]
    assert json.loads((tmp_path / "out" / "00000" / "result.json").read_text())["repeats"][0]["stop_reason"] == "threshold"
    assert [t["reward"] for t in cow] == [0.0, 0.0] and cow[0]["details"]["reason"] == "expected cow>=1, found 0"
    for step in red_bench:
        [colour] = step["details"]["colors"]["bench"]
        assert colour in COLORS and step["reward"] == float(colour == "red")


T2I_COMPBENCH = {  # prompt file -> prompts, the category's own detail key (color/shape/texture share one evaluator)
    "color_val.txt": (["a green bench and a blue bowl", "a red dog and a blue cat"], "attribute"),
    "non_spatial_val.txt": (["A dog is looking at a bowl.", "a cat is near a teddy bear"], "clip"),
    "spatial_val.txt": (["a dog next to a cat", "a bear on the left of a bowl"], "spatial"),
    "3d_spatial_val.txt": (["a dog in front of a cat", "a bowl behind a bench"], "3d"),
    "numeracy_val.txt": (["two dogs and a cat", "three cats"], "numeracy"),
    "complex_val.txt": (["The fluffy cat is on the left of the soft pillow.", "The black phone was resting on the brown charger."], "kind"),
}


@pytest.mark.parametrize("prompt_file", list(T2I_COMPBENCH))
def test_t2i_compbench_yaml_scores_each_category_from_its_prompt_file(ckpt, tmp_path, prompt_file):
    """The category comes from the official file name; every evaluator (BLIP-VQA, CLIP, Grounding
    DINO 2D/3D with DPT depth, numeracy, 3-in-1) runs through the runner."""
    texts, key = T2I_COMPBENCH[prompt_file]
    (tmp_path / prompt_file).write_text("\n".join(texts) + "\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "new_objects.txt").write_text("dog - dogs\ncat - cats\n")
    (data_dir / "complex_val_spatial.txt").write_text("The fluffy cat is on the left of the soft pillow.\n")
    (data_dir / "complex_val_action.txt").write_text("The black phone was resting on the brown charger.\n")
    options = {"data_dir": str(data_dir), "blip_model": ckpt["blip"], "blip_image_size": "48", "clip_model": ckpt["clip"],
               "detector_model": ckpt["gdino"], "box_threshold": "0.0", "depth_model": ckpt["dpt"], "depth_image_size": "32"}
    overrides = [arg for name, value in options.items() for arg in (f"--model.reward.init_args.{name}", value)]
    summary = run(tmp_path / "out", "t2i_compbench", str(tmp_path / prompt_file), *overrides)
    category = prompt_file.removesuffix("_val.txt")
    traces = finished_run(tmp_path / "out", summary, 2, "rewards.t2i_compbench.T2ICompBenchReward", {"category", "score", key})
    for step in (s for trace in traces for s in trace):
        assert step["details"]["category"] == category and step["reward"] == pytest.approx(step["details"]["score"])
        if key == "attribute":
            assert step["reward"] == pytest.approx(attribute_score(list(step["details"]["questions"].values())), abs=1e-6)
    if key == "kind":
        assert [t[0]["details"]["kind"] for t in traces] == ["spatial", "action"]


def test_clip_score_yaml_runs_and_reports_100x_cosine(ckpt, tmp_path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", GENEVAL[:2])
    summary = run(tmp_path / "out", "clip_score", prompts, "--model.reward.init_args.checkpoint", ckpt["clip"])
    traces = finished_run(tmp_path / "out", summary, 2, "rewards.clip_score.CLIPScoreReward", {"clip_score", "truncated"})
    for step in (s for trace in traces for s in trace):
        assert step["details"]["clip_score"] == pytest.approx(100 * step["reward"], abs=1e-3)


def test_self_reward_yaml_judges_with_the_backbone_itself(tmp_path):
    """No checkpoint at all: the tiny Janus being optimised answers yes/no about its own image."""
    prompts = write_jsonl(tmp_path / "prompts.jsonl", GENEVAL[:2])
    summary = run(tmp_path / "out", "self_reward", prompts)
    traces = finished_run(tmp_path / "out", summary, 2, "rewards.self_reward.SelfReward", {"mode", "p_yes", "p_no"})
    for step in (s for trace in traces for s in trace):
        d = step["details"]
        assert d["mode"] == "prob" and step["reward"] == pytest.approx(d["p_yes"] / (d["p_yes"] + d["p_no"]), abs=1e-5)


# --------------------------------------------------------------------------- judge rewards
def test_wise_yaml_asks_an_openai_compatible_judge_with_the_key_from_the_environment(tmp_path, monkeypatch):
    """The real HTTP client against a fake OpenAI-compatible server on 127.0.0.1 that answers the
    legacy three scores; the key comes from an environment variable and appears in no output."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MILR_E2E_JUDGE_KEY", KEY)
    (tmp_path / "wise.json").write_text(json.dumps(WISE))
    with FakeChatServer(default=ok("Consistency: 2\nRealism: 1\nAesthetic Quality: 0")) as server:
        summary = run(tmp_path / "out", "wise", str(tmp_path / "wise.json"), "--model.reward.init_args.base_url", server.url,
                      "--model.reward.init_args.api_key_env", "MILR_E2E_JUDGE_KEY", "--model.reward.init_args.max_retries", "0",
                      "--model.reward_threshold", "null")  # wise.yaml stops above 0.5: score both steps anyway
    keys = {"prompt_id", "judge", "consistency", "realism", "aesthetic_quality", "wiscore", "answer"}
    traces = finished_run(tmp_path / "out", summary, 2, "rewards.wise.WiseReward", keys)
    for trace, item in zip(traces, WISE):
        assert [t["reward"] for t in trace] == [pytest.approx(0.8)] * 2  # WiScore of 2/1/0
        assert trace[0]["details"]["prompt_id"] == item["prompt_id"] and trace[0]["details"]["judge"] == "gpt-4o-2024-05-13"
    assert len(server.requests) == sum(len(t) for t in traces)  # one request per scored image
    for request in server.requests:
        assert request["headers"]["Authorization"] == f"Bearer {KEY}" and request["body"]["model"] == "gpt-4o-2024-05-13"
        text, image = request["body"]["messages"][-1]["content"]
        assert any(f'"{w["Prompt"]}"' in text["text"] and w["Explanation"] in text["text"] for w in WISE)
        assert image["image_url"]["url"].startswith("data:image/png;base64,")
    assert all(KEY.encode() not in f.read_bytes() for f in (tmp_path / "out").rglob("*") if f.is_file())


def test_unified_reward_yaml_runs_with_a_scripted_answer(ckpt, tmp_path, monkeypatch):
    """Scripted judge (``script_qwen_answer``): the tiny Qwen2.5-VL runs on the real inputs, its
    tokens are replaced by "Final Score: 4", which maps to 0.75."""
    calls = script_qwen_answer(monkeypatch, ckpt["qwen"], "cup (object): 1\nFinal Score: 4")
    prompts = write_jsonl(tmp_path / "prompts.jsonl", GENEVAL[:2])
    summary = run(tmp_path / "out", "unified_reward", prompts, "--model.reward.init_args.model_name_or_path", ckpt["qwen"])
    traces = finished_run(tmp_path / "out", summary, 2, "rewards.unified_reward.UnifiedReward", {"raw_score", "score", "answer"})
    for step in (s for trace in traces for s in trace):
        assert step["reward"] == 0.75 and step["details"]["raw_score"] == 4.0
        assert step["details"]["answer"] == "cup (object): 1\nFinal Score: 4"
    assert sum(calls) == sum(len(t) for t in traces)


def test_wise_local_yaml_runs_with_a_scripted_answer(ckpt, tmp_path, monkeypatch):
    """Scripted judge (``script_qwen_answer``) answering the legacy three scores 2/2/1 (WiScore 0.95)."""
    calls = script_qwen_answer(monkeypatch, ckpt["qwen"], "Consistency: 2\nRealism: 2\nAesthetic Quality: 1")
    (tmp_path / "wise.json").write_text(json.dumps(WISE))
    summary = run(tmp_path / "out", "wise_local", str(tmp_path / "wise.json"), "--model.reward.init_args.model_name_or_path", ckpt["qwen"])
    keys = {"prompt_id", "judge", "consistency", "realism", "aesthetic_quality", "wiscore", "answer"}
    traces = finished_run(tmp_path / "out", summary, 2, "rewards.wise.WiseReward", keys)
    for step in (s for trace in traces for s in trace):
        assert step["reward"] == pytest.approx(0.95) and step["details"]["judge"] == ckpt["qwen"]
    assert sum(calls) == sum(len(t) for t in traces)


@pytest.mark.parametrize("reward, max_tokens, parse_error", [
    ("unified_reward", "max_new_tokens", "no 'Final Score: <number>' line"),
    ("wise_local", "max_tokens", "WISE judge answer lacks"),
])
def test_local_judge_yaml_fails_loudly_when_the_random_judge_gives_no_score(ckpt, tmp_path, caplog, reward, max_tokens, parse_error):
    """Not scripted: the tiny random Qwen2.5-VL answers freely, its answer holds no score, and the
    run stops with the reward's parse error instead of inventing a score; no prompt is complete."""
    (tmp_path / "wise.json").write_text(json.dumps(WISE))
    overrides = ["--model.reward.init_args.model_name_or_path", ckpt["qwen"], f"--model.reward.init_args.{max_tokens}", "8"]
    with pytest.raises(JudgeParseError, match=r"2 answer\(s\) could not be parsed after 1 attempt\(s\)"):
        run(tmp_path / "out", reward, str(tmp_path / "wise.json"), *overrides)
    assert parse_error in caplog.text  # the reward's own rule rejected the answer
    assert not list((tmp_path / "out").glob("*/result.json"))


def test_mixed_yaml_combines_detector_git_and_scripted_unified_reward(ckpt, tmp_path, monkeypatch):
    """Grounding DINO + GIT run for real; the UnifiedReward part is the scripted tiny Qwen2.5-VL
    ("Final Score: 5" -> 1.0), and each score is the authors' weighted mix of the three."""
    calls = script_qwen_answer(monkeypatch, ckpt["qwen"], "Final Score: 5")
    position = {"tag": "position", "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}],
                "prompt": "a photo of a dog right of a teddy bear"}
    metas = [GENEVAL[1], position]
    prompts = write_jsonl(tmp_path / "evaluation_metadata.jsonl", metas)
    summary = run(tmp_path / "out", "mixed", prompts, "--model.reward.init_args.git_model", ckpt["git"],
                  "--model.reward.init_args.detector_model", ckpt["gdino"], "--model.reward.init_args.unified_model", ckpt["qwen"],
                  "--model.reward.init_args.box_threshold", "0.0")
    keys = {"score", "detector", "detector_task", "detections", "git_colour", "git_answers", "unified", "unified_details"}
    traces = finished_run(tmp_path / "out", summary, 2, "rewards.mixed.MixedReward", keys)
    for trace, meta, task in zip(traces, metas, ["numeracy", "spatial"]):
        for step in trace:
            d = step["details"]
            assert d["detector_task"] == task and d["unified"] == 1.0 and d["unified_details"]["answer"] == "Final Score: 5"
            assert step["reward"] == pytest.approx(mixed_score(meta["tag"], d["detector"], d["git_colour"], 1.0), abs=1e-6)
    assert list(traces[0][0]["details"]["git_answers"]) == ["Is this a red bench?"]
    assert sum(calls) == sum(len(t) for t in traces)


# --------------------------------------------------------------------------- preference and yes/no judges
JUDGES = {  # name -> class path, detail keys, init_args pointing at the tiny checkpoints
    "pickscore": ("rewards.preference.PickScoreReward", {"pickscore", "truncated"}, lambda c: {"checkpoint": c["clip"], "processor": c["clip"]}),
    "hpsv2": ("rewards.preference.HPSv2Reward", {"hps", "truncated"}, lambda c: {"checkpoint": c["clip"], "processor": c["clip"]}),
    "vlm_yes_no": ("rewards.vlm_yes_no.VLMYesNoReward", {"questions", "p_yes"}, lambda c: {"model_name_or_path": c["qwen3"]}),
}  # fmt: skip


@pytest.mark.parametrize("reward", list(JUDGES))
def test_judge_yaml_runs_as_the_reward_with_the_other_judges_as_monitors_in_the_report(ckpt, tmp_path, reward):
    """Each judge optimised through its YAML, the two others watching as held-out monitors; the
    report puts both monitors beside the reward, before and after, with the reward-hacking count."""
    class_path, keys, args = JUDGES[reward]
    monitors = [{"class_path": JUDGES[m][0], "init_args": JUDGES[m][2](ckpt)} for m in JUDGES if m != reward]
    overrides = [arg for name, value in args(ckpt).items() for arg in (f"--model.reward.init_args.{name}", value)]
    overrides += ["--model.monitors", json.dumps(monitors)]
    prompts = write_jsonl(tmp_path / "evaluation_metadata.jsonl", GENEVAL[1:])
    out = tmp_path / "out"
    summary = run(out, reward, prompts, *overrides)
    traces = finished_run(out, summary, 2, class_path, keys)
    watched = sorted(m for m in JUDGES if m != reward)
    records = [json.loads((f / "result.json").read_text())["repeats"][0] for f in sorted(p.parent for p in out.glob("*/result.json"))]
    for record in records:
        assert sorted(record["monitors"]) == watched
        assert all(0.0 <= v <= 1.0 for m in watched for v in record["monitors"][m].values())
    if reward == "vlm_yes_no":  # GenEval clauses: one question each ("a photo of a red bench": one clause)
        assert traces[0][0]["details"]["questions"] == ["Is there a red bench in the image?"]
    report.main([str(out), "--bootstrap", "10"])
    md = (out / "report.md").read_text()
    section = md.split("## Optimised reward and monitors")[1].split("##")[0]
    header, _, row = section.strip().splitlines()[:3]
    assert all(f"{m}: initial → selected" in header for m in watched) and header.rstrip(" |").endswith("reward up, a monitor down")
    hacked = sum(bool(report.hacked(r)) for r in report.load(out).run.prompts for r in r.repeats)
    assert row.rstrip(" |").rsplit("|", 1)[1].strip() == str(hacked)
    assert all(m in (out / "report.html").read_text() for m in watched)
