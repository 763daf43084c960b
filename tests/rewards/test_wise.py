"""WISE reward: official judge prompts, score parsing, WiScore and category/overall aggregation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonargparse
import pytest
import torch
import yaml
from PIL import Image

from data.prompt import Prompt
from rewards import wise
from rewards.base import Reward, build, score
from rewards.hub import MissingCheckpointError
from rewards.judges import JudgeParseError, OpenAIJudge, QwenVLJudge, openai_message
from rewards.wise import (
    CATEGORIES,
    WiseReward,
    build_messages,
    category_of,
    category_scores,
    overall_score,
    parse_legacy_scores,
    parse_verified_score,
    summarize,
    wiscore,
)
from tests.helpers import script_judge

REPO = Path(__file__).resolve().parents[2]
OFFICIAL_JUDGE_DIR = REPO.parent / "shared" / "benchmarks" / "wise" / "judge"


def prompt(text="Traditional food of the Mid-Autumn Festival", pid=1, **meta) -> Prompt:
    meta = {"explanation": "This refers to mooncakes.", "prompt_id": pid, **meta}
    return Prompt(text=text, index=pid - 1, metadata=meta)


def image(color=(10, 20, 30)) -> Image.Image:
    return Image.new("RGB", (8, 8), color)


# --------------------------------------------------------------------------- WiScore and aggregation


@pytest.mark.parametrize(
    "c, r, a, expected",
    [(0, 0, 0, 0.0), (2, 2, 2, 1.0), (2, 0, 0, 0.7), (0, 2, 0, 0.2), (0, 0, 2, 0.1), (2, 1, 0, 0.8), (1, 2, 1, 0.6)],
)
def test_wiscore_is_weighted_half_sum(c, r, a, expected):
    assert wiscore(c, r, a) == pytest.approx(expected)


@pytest.mark.parametrize(
    "protocol, pid, category",
    [
        ("legacy", 1, "CULTURE"), ("legacy", 400, "CULTURE"), ("legacy", 401, "TIME"), ("legacy", 567, "TIME"),
        ("legacy", 568, "SPACE"), ("legacy", 700, "SPACE"), ("legacy", 701, "BIOLOGY"), ("legacy", 800, "BIOLOGY"),
        ("legacy", 801, "PHYSICS"), ("legacy", 900, "PHYSICS"), ("legacy", 901, "CHEMISTRY"), ("legacy", 1000, "CHEMISTRY"),
        ("legacy", 0, None), ("legacy", 1001, None),
        ("verified", 400, "CULTURE"), ("verified", 520, "TIME"), ("verified", 521, "SPACE"), ("verified", 640, "SPACE"),
        ("verified", 641, "BIOLOGY"), ("verified", 761, "PHYSICS"), ("verified", 881, "CHEMISTRY"), ("verified", 1001, None),
    ],
)
def test_category_of_uses_official_prompt_id_ranges(protocol, pid, category):
    assert category_of(pid, protocol) == category


def test_category_scores_are_means_per_category_ignoring_unknown_ids():
    got = category_scores([(1, 1.0), (2, 0.5), (401, 0.2), (1001, 1.0)])
    assert got == {"CULTURE": (0.75, 2), "TIME": (0.2, 1)}


def test_overall_uses_official_weights():
    cats = dict(zip(CATEGORIES, [1.0, 0.5, 0.25, 0.0, 1.0, 0.5]))
    assert overall_score(cats, "legacy") == pytest.approx(0.4 + 0.167 * 0.5 + 0.133 * 0.25 + 0.1 + 0.05)
    assert overall_score(cats, "verified") == pytest.approx(0.4 + 0.12 * (0.5 + 0.25 + 0.0 + 1.0 + 0.5))
    with pytest.raises(ValueError, match="CHEMISTRY"):
        overall_score({c: 1.0 for c in CATEGORIES[:-1]})


def rows_for(ids, c=2, r=1, a=0):
    return [{"prompt_id": i, "consistency": c, "realism": r, "aesthetic_quality": a} for i in ids]


def test_summarize_complete_legacy_run_equals_weighted_mean():
    rows = rows_for(range(1, 401), 2, 2, 2) + rows_for(range(401, 1001), 0, 0, 0)
    out = summarize(rows)
    assert out["categories"]["CULTURE"] == (pytest.approx(1.0), 400) and out["categories"]["TIME"] == (0.0, 167)
    assert out["overall"] == pytest.approx(0.4) and out["missing_prompt_ids"] == []


def test_summarize_refuses_overall_when_ids_are_missing():
    out = summarize(rows_for(range(1, 1000)) + [{"prompt_id": "x", "consistency": 2, "realism": 2, "aesthetic_quality": 2}])
    assert out["overall"] is None and out["missing_prompt_ids"] == [1000]
    assert out["categories"]["CHEMISTRY"] == (pytest.approx(0.8), 99)


def test_summarize_verified_rows():
    rows = [{"prompt_id": i, "score": 1.0 if i <= 400 else 0.0} for i in range(1, 1001)]
    assert summarize(rows, "verified")["overall"] == pytest.approx(0.4)


def test_cli_summarize_prints_categories_and_overall(tmp_path, capsys):
    path = tmp_path / "scores.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows_for(range(1, 1001), 2, 1, 0)) + "\n")
    assert wise.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "CULTURE    0.80  (n=400)" in out and "Overall    0.80" in out


# --------------------------------------------------------------------------- prompts


def official_messages(protocol: str, prompt_data: dict) -> list:
    """Run the official ``build_evaluation_messages`` (copied verbatim from the WISE repo)."""
    path = OFFICIAL_JUDGE_DIR / f"{protocol}_build_evaluation_messages.py.txt"
    if not path.is_file():
        pytest.skip(f"official WISE judge prompt not available at {path}")
    namespace: dict = {"Dict": dict}
    exec(path.read_text(), namespace)
    return namespace["build_evaluation_messages"](prompt_data, "IMAGE_B64")


@pytest.mark.parametrize("protocol", ["legacy", "verified"])
def test_messages_match_the_official_builder(protocol):
    text, explanation = 'A "quoted" {braced} prompt', "It is mooncakes."
    ours = [openai_message(m) for m in build_messages(text, explanation, image(), protocol)]
    theirs = official_messages(protocol, {"Prompt": text, "Explanation": explanation})
    assert [m["role"] for m in ours] == [m["role"] for m in theirs] == ["system", "user"]
    assert ours[0] == theirs[0]
    assert ours[1]["content"][0] == theirs[1]["content"][0]  # the protocol text, byte for byte
    assert [p["type"] for p in ours[1]["content"]] == [p["type"] for p in theirs[1]["content"]] == ["text", "image_url"]
    assert ours[1]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    "template, digest",
    [
        (wise.LEGACY_TEMPLATE, "08b61170ace02a0830e76b815f5920e151c367b487c57ba1ca425de963db326e"),
        (wise.VERIFIED_TEMPLATE, "ae8ed379b898b441a5ebe7b3b7ba86fee0ac5ab5ac1272bedf12891029cf302c"),
    ],
)
def test_templates_are_unchanged(template, digest):
    """sha256 of the verbatim official text (fields renamed): catches an editor stripping trailing spaces."""
    assert hashlib.sha256(template.encode()).hexdigest() == digest


def test_legacy_message_content():
    [system, user] = build_messages("Tea ceremony", "Japanese matcha", image(), "legacy")
    assert "Vincennes image quality audit expert" in system["content"][0]["text"]
    text = user["content"][0]["text"]
    assert 'PROMPT: "Tea ceremony"\nEXPLANATION: "Japanese matcha"\n' in text
    assert "**Consistency (0-2):**" in text and "Be EXTREMELY strict" in text
    assert user["content"][1]["type"] == "image"


def test_explanation_is_required_and_read_from_either_key():
    assert wise.explanation_of(prompt()) == "This refers to mooncakes."
    assert wise.explanation_of(Prompt("p", 3, {"Explanation": "Upper"})) == "Upper"
    with pytest.raises(ValueError, match="prompt 7.*explanation"):
        wise.explanation_of(Prompt("p", 7, {"prompt_id": 8}))


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Consistency: 2\nRealism: 1\nAesthetic Quality: 0", (2, 1, 0)),
        ("**Consistency**: 1\n**Realism**: 2\n**Aesthetic Quality**: 1", (1, 2, 1)),
        ("**Consistency** 0 **Realism** 0 **Aesthetic Quality** 2", (0, 0, 2)),
        ("consistency 1\nREALISM: 1\naesthetic quality:1", (1, 1, 1)),
        ("Consistency: 0\nRealism: 0\nAesthetic Quality: 0\nOn reflection, Consistency: 1", (1, 0, 0)),  # last wins
        ("2\n1\n0\n", (2, 1, 0)),  # bare-lines fallback
        ("  1 \n2\n2\n0", (1, 2, 2)),  # first three bare lines
    ],
)
def test_parse_legacy_scores_follows_official_rules(answer, expected):
    got = parse_legacy_scores(answer)
    assert (got["consistency"], got["realism"], got["aesthetic_quality"]) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "I cannot evaluate this image.",
        "Consistency: 2\nRealism: 1",  # a metric missing
        "Consistency: 2\n1\n0",  # regex matched something, so no bare-lines fallback (official)
        "Consistency (0-2): 2\nRealism (0-2): 1\nAesthetic Quality (0-2): 0",  # official regex does not match these
        "2\n1",  # too few bare lines
        "**Consistency:** 2\n**Realism:** 1\n**Aesthetic Quality:** 0",  # bold colon: the official regex misses it
        "Consistency: 5\nRealism: 1\nAesthetic Quality: 0",  # would push WiScore above 1
    ],
)
def test_parse_legacy_scores_rejects_malformed_answers(answer):
    with pytest.raises(ValueError):
        parse_legacy_scores(answer)


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Score: 1", 1.0),
        ("**Score**: 0", 0.0),
        ("score 1", 1.0),
        ("<think>Maybe Score: 0</think>\nScore: 1", 1.0),
        ("</think>Score: 0", 0.0),
        ("1\n", 1.0),
    ],
)
def test_parse_verified_score(answer, expected):
    assert parse_verified_score(answer) == expected


@pytest.mark.parametrize("answer", ["", "Score: 2", "Score: 10", "**Score:** 1", "0\n1", "The image is fine."])
def test_parse_verified_score_rejects_malformed_answers(answer):
    with pytest.raises(ValueError):
        parse_verified_score(answer)


# --------------------------------------------------------------------------- the reward


def test_reward_scores_wiscore_with_details(monkeypatch):
    reward = WiseReward(judge="openai", cache_dir=None)
    asked = script_judge(reward, monkeypatch, ["Consistency: 2\nRealism: 1\nAesthetic Quality: 0", "Consistency: 0\nRealism: 0\nAesthetic Quality: 0"])
    out = score(reward, [image(), image((1, 2, 3))], [prompt(pid=5), prompt("Space needle", pid=600)])
    assert torch.allclose(out.scores, torch.tensor([0.8, 0.0]))
    assert out.details[0] == {
        "prompt_id": 5, "judge": "gpt-4o-2024-05-13", "consistency": 2.0, "realism": 1.0, "aesthetic_quality": 0.0,
        "wiscore": pytest.approx(0.8), "answer": "Consistency: 2\nRealism: 1\nAesthetic Quality: 0",
    }
    json.dumps(out.details)
    # one batched request; each conversation carries its own prompt, explanation and image
    [convs] = asked
    assert 'PROMPT: "Space needle"' in convs[1][1]["content"][0]["text"]
    assert convs[1][1]["content"][1]["image"].getpixel((0, 0)) == (1, 2, 3)
    # the details rows are what `summarize` reads
    assert summarize(out.details)["categories"] == {"CULTURE": (pytest.approx(0.8), 1), "SPACE": (0.0, 1)}


def test_reward_reasks_unparseable_answers_then_errors(monkeypatch):
    reward = WiseReward(judge="openai", parse_attempts=3)
    asked = script_judge(reward, monkeypatch, ["sorry", "Consistency: 1\nRealism: 1\nAesthetic Quality: 1"])
    assert reward.evaluate([image()], [prompt()]).scores.tolist() == [pytest.approx(0.5)]
    assert len(asked) == 2
    reward = WiseReward(judge="openai", parse_attempts=3)
    asked = script_judge(reward, monkeypatch, ["sorry"] * 3)
    with pytest.raises(JudgeParseError, match=r"after 3 attempt\(s\)"):
        reward.evaluate([image()], [prompt()])
    assert len(asked) == 3


def test_verified_protocol_scores_binary(monkeypatch):
    reward = WiseReward(protocol="verified", model="Qwen3.5-35B-A3B")
    asked = script_judge(reward, monkeypatch, ["Score: 1", "<think>hm</think>Score: 0"])
    out = reward.evaluate([image(), image()], [prompt(), prompt(pid=2)])
    assert out.scores.tolist() == [1.0, 0.0] and out.details[1]["score"] == 0.0
    assert "return ONLY one binary score" in asked[0][0][1]["content"][0]["text"]
    assert reward.judge.max_tokens == 500


def test_judge_options_reach_the_backends():
    remote = WiseReward(base_url="http://h:1/v1/", api_key_env="MY_KEY", max_tokens=77, disable_thinking=True).judge
    assert isinstance(remote, OpenAIJudge)
    assert (remote.url, remote.api_key_env, remote.max_tokens) == ("http://h:1/v1/chat/completions", "MY_KEY", 77)
    assert remote.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}
    local = WiseReward(judge="local", model_name_or_path="some/qwen", batch_size=2)
    assert isinstance(local.judge, QwenVLJudge) and local.judge.model == "some/qwen" and local.judge.max_new_tokens == 2000
    local.setup(device="cpu", dtype=torch.bfloat16)
    assert local.judge.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="protocol"):
        WiseReward(protocol="v2")


def test_reward_refuses_prompts_without_explanation(monkeypatch):
    reward = WiseReward()
    script_judge(reward, monkeypatch, ["Consistency: 2\nRealism: 2\nAesthetic Quality: 2"])
    with pytest.raises(ValueError, match="explanation"):
        reward.evaluate([image()], [Prompt("p", 0, {})])


def test_local_judge_missing_weights_names_the_checkpoint():
    reward = WiseReward(judge="local")
    with pytest.raises(MissingCheckpointError, match="Qwen/Qwen2.5-VL-7B-Instruct"):
        reward.evaluate([image()], [prompt()])


@pytest.mark.parametrize("name, judge", [("wise", OpenAIJudge), ("wise_local", QwenVLJudge)])
def test_yaml_configs_instantiate(name, judge):
    config = yaml.safe_load((REPO / "configs" / "rewards" / f"{name}.yaml").read_text())
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--reward", type=Reward)
    reward = parser.instantiate(parser.parse_object({"reward": config["model"]["reward"]})).reward
    assert isinstance(reward, WiseReward) and isinstance(reward.judge, judge)


def test_registered_as_wise():
    assert isinstance(build("wise"), WiseReward)
