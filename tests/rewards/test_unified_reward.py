"""UnifiedReward: the reference prompt, "Final Score" parsing, the 1..5 -> [0, 1] mapping, errors."""

from __future__ import annotations

from pathlib import Path

import jsonargparse
import pytest
import torch
import yaml
from PIL import Image

from data.prompt import Prompt
from rewards.base import Reward, build, score
from rewards.hub import MissingCheckpointError
from rewards.judges import JudgeParseError, QwenVLJudge
from rewards.unified_reward import PROMPT_TEMPLATE, UnifiedReward, normalize_score, parse_final_score
from tests.helpers import script_judge

REPO = Path(__file__).resolve().parents[2]


def image(color=(10, 20, 30)) -> Image.Image:
    return Image.new("RGB", (8, 8), color)


def test_prompt_is_the_reference_instruction():
    text = PROMPT_TEMPLATE.format(prompt="a photo of a red cup")
    assert text.startswith(
        "You are given a text caption and a generated image based on that caption. Your task is to evaluate "
        "this image based on two key criteria:\n1. Alignment with the Caption: Assess how well this image aligns "
        "with the provided caption. Consider the accuracy of depicted objects, their relationships, and attributes "
        "as described in the caption.\n2. Overall Image Quality: Examine the visual quality of this image, including "
        "clarity, detail preservation, color accuracy, and overall aesthetic appeal.\n"
    )
    assert "'element (type): value' (where value=0 means not generated, and value=1 means generated)" in text
    assert "assign a score from 1 to 5 after 'Final Score:'.\n" in text
    assert text.endswith("Your task is provided as follows:\nText Caption: [a photo of a red cup]")


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Final Score: 4", 4.0),
        ("cup (object): 1\nred (attribute): 0\nFinal Score: 3.5", 3.5),
        ("Final Score: 5 \n", 5.0),
        ("Final Score: **2**", 2.0),
        ("**Final Score:** 1", 1.0),
        ("Final Score: N/A\nFinal Score: 2", 2.0),  # the first line that parses
        ("Final Score: 3\nFinal Score: 5", 3.0),
    ],
)
def test_parse_final_score(answer, expected):
    assert parse_final_score(answer) == expected


@pytest.mark.parametrize("answer", ["", "The image is great.", "final score: 4", "Final Score: four", "Score: 4", "Final Score: 4/5"])
def test_parse_final_score_rejects_malformed_answers(answer):
    with pytest.raises(ValueError):
        parse_final_score(answer)


@pytest.mark.parametrize("raw, expected", [(1, 0.0), (2, 0.25), (3, 0.5), (4.5, 0.875), (5, 1.0), (0, 0.0), (7, 1.0)])
def test_normalize_score_maps_1_to_5_onto_unit_interval_clipped(raw, expected):
    assert normalize_score(raw) == expected


def test_evaluate_scores_and_details(monkeypatch):
    reward = UnifiedReward()
    asked = script_judge(reward, monkeypatch, ["cup (object): 1\nFinal Score: 5", "Final Score: 2"])
    prompts = [Prompt("a red cup", 0), Prompt("two dogs", 1)]
    out = score(reward, [image(), image((1, 2, 3))], prompts)
    assert out.scores.tolist() == [1.0, 0.25]
    assert out.details[1] == {"raw_score": 2.0, "score": 0.25, "answer": "Final Score: 2"}
    # one user turn per image: the image first, then the instruction with the caption (reference order)
    [[first, second]] = asked
    assert [m["role"] for m in second] == ["user"]
    assert second[0]["content"][0]["type"] == "image" and second[0]["content"][0]["image"].getpixel((0, 0)) == (1, 2, 3)
    assert second[0]["content"][1] == {"type": "text", "text": PROMPT_TEMPLATE.format(prompt="two dogs")}


def test_unparseable_output_is_an_error_not_a_score(monkeypatch):
    reward = UnifiedReward()
    asked = script_judge(reward, monkeypatch, ["I like it."])
    with pytest.raises(JudgeParseError, match="I like it"):
        reward.evaluate([image()], [Prompt("a red cup", 0)])
    assert len(asked) == 1  # greedy decoding would give the same answer again


def test_constructor_and_setup_for_the_mixed_reward():
    reward = UnifiedReward(model_name_or_path="/ckpt/unified", max_new_tokens=64, batch_size=2)
    assert isinstance(reward.judge, QwenVLJudge)
    assert (reward.judge.model, reward.judge.max_new_tokens, reward.judge.batch_size) == ("/ckpt/unified", 64, 2)
    reward.setup(device="cpu", dtype=torch.bfloat16)
    assert reward.judge.device == torch.device("cpu") and reward.judge.dtype == torch.bfloat16
    assert UnifiedReward().judge.model == "CodeGoat24/UnifiedReward-qwen-7b"


def test_missing_weights_error_names_the_checkpoint():
    with pytest.raises(MissingCheckpointError, match="CodeGoat24/UnifiedReward-qwen-7b") as err:
        UnifiedReward().evaluate([image()], [Prompt("a red cup", 0)])
    assert "UnifiedReward judge" in str(err.value) and "hf download" in str(err.value)


def test_missing_local_directory_is_named(tmp_path):
    with pytest.raises(MissingCheckpointError, match="no-unified-here"):
        UnifiedReward(model_name_or_path=str(tmp_path / "no-unified-here")).evaluate([image()], [Prompt("x", 0)])


def test_yaml_config_instantiates():
    config = yaml.safe_load((REPO / "configs" / "rewards" / "unified_reward.yaml").read_text())
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--reward", type=Reward)
    reward = parser.instantiate(parser.parse_object({"reward": config["model"]["reward"]})).reward
    assert isinstance(reward, UnifiedReward) and reward.judge.model == "CodeGoat24/UnifiedReward-qwen-7b"


def test_registered_as_unified_reward():
    assert isinstance(build("unified_reward"), UnifiedReward)
