"""Mixed reward (Grounding DINO + GIT VQA colour + UnifiedReward): the authors' rules, and the
wiring on tiny random GIT / Grounding DINO checkpoints with a test-only UnifiedReward stand-in."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
import yaml

from data.prompt import Prompt
from rewards.base import Reward, RewardOutput, build, score
from rewards.hub import MissingCheckpointError
from rewards.mixed import (
    GitVqa,
    MixedReward,
    colour_questions,
    detector_task,
    mixed_score,
    mixed_weights,
    nms,
    numeracy_task_score,
    object_task_score,
    spatial_task_score,
)
from rewards.unified_reward import UnifiedReward
from tests.rewards.test_t2i_compbench import images
from tests.rewards.tiny_models import tiny_git, tiny_grounding_dino

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "rewards" / "mixed.yaml"

# GenEval evaluation_metadata.jsonl lines (verbatim metadata)
COLORS = {"tag": "colors", "include": [{"class": "fire hydrant", "count": 1, "color": "blue"}], "prompt": "a photo of a blue fire hydrant"}
COLOR_ATTR = {"tag": "color_attr", "include": [{"class": "wine glass", "count": 1, "color": "purple"}, {"class": "apple", "count": 1, "color": "black"}], "prompt": "a photo of a purple wine glass and a black apple"}
COUNTING = {"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}], "prompt": "a photo of two clocks"}
POSITION = {"tag": "position", "include": [{"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}], "prompt": "a photo of a dog right of a teddy bear"}
SINGLE = {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}


class FixedUnified(Reward):
    """Test-only stand-in for UnifiedReward (a 7B judge): a fixed score, records its prompts."""

    def __init__(self, value: float = 0.5) -> None:
        self.value = value
        self.seen: list[str] = []

    def evaluate(self, images, prompts):
        self.seen += [p.text for p in prompts]
        return RewardOutput(torch.full((len(images),), self.value), [{"fixed": self.value} for _ in images])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_mixed")
    return {"git": tiny_git(root / "git"), "gdino": tiny_grounding_dino(root / "gdino")}


def make_reward(checkpoints, unified: Reward | None = None, **kwargs) -> MixedReward:
    reward = MixedReward(git_model=str(checkpoints["git"]), detector_model=str(checkpoints["gdino"]), unified=unified or FixedUnified(), **kwargs)
    reward.setup(device="cpu", dtype=torch.float32)
    return reward


# --------------------------------------------------------------------------- weights and questions
@pytest.mark.parametrize("tag", ["colors", "color_attr"])
def test_colour_tags_weight_git_like_the_detector(tag):
    assert mixed_weights(tag) == (0.4, 0.4, 0.2)
    assert mixed_score(tag, 1.0, 0.5, 0.0) == pytest.approx(0.6)


@pytest.mark.parametrize("tag", ["single_object", "two_object", "counting", "position", None])
def test_other_tags_weight_the_detector(tag):
    assert mixed_weights(tag) == (0.6, 0.2, 0.2)
    assert mixed_score(tag, 1.0, 0.5, 0.0) == pytest.approx(0.7)
    assert mixed_score(tag, 1.0, 1.0, 1.0) == pytest.approx(1.0)


def test_git_questions_follow_the_authors_templates():
    assert colour_questions(COLORS["include"]) == ["Is this a blue fire hydrant?"]
    assert colour_questions(COLOR_ATTR["include"]) == ["Is this a purple wine glass?", "Is this a black apple?"]
    assert colour_questions(COUNTING["include"]) == ["Are there 2  clocks?"]  # empty colour: double space, as theirs
    assert colour_questions(SINGLE["include"]) == ["Is this a  bench?"]


# --------------------------------------------------------------------------- detector task scores
def test_task_choice_follows_the_authors_precedence():
    assert detector_task(POSITION["include"]) == {"task": "spatial", "obj1": "dog", "obj2": "teddy bear", "locality": "right of"}
    assert detector_task(COUNTING["include"]) == {"task": "numeracy", "counts": [("clock", 2)]}
    assert detector_task(COLOR_ATTR["include"])["task"] == "numeracy"  # every GenEval item has a count
    assert detector_task([{"class": "cat"}, {"class": "dog"}]) == {"task": "object", "objects": ["cat", "dog"]}
    with pytest.raises(ValueError, match="reference object"):
        detector_task([{"class": "dog", "count": 1, "position": ["left of", 0]}])


LEFT, RIGHT, TOP, BOTTOM = (0.0, 0.4, 0.2, 0.6), (0.6, 0.4, 0.8, 0.6), (0.4, 0.0, 0.6, 0.2), (0.4, 0.6, 0.6, 0.8)


def test_spatial_task_score():
    assert spatial_task_score([RIGHT], [LEFT], "right of") == pytest.approx(0.9)
    assert spatial_task_score([LEFT], [RIGHT], "right of") == pytest.approx(0.4)
    assert spatial_task_score([LEFT], [RIGHT], "left of") == pytest.approx(0.9)
    assert spatial_task_score([BOTTOM], [TOP], "below") == pytest.approx(0.9)
    assert spatial_task_score([LEFT, RIGHT], [RIGHT], "left of") == pytest.approx(0.9)  # best box = first
    assert spatial_task_score([LEFT], [], "left of") == pytest.approx(0.2)
    assert spatial_task_score([], [], "left of") == 0.0


def test_above_is_fixed_unless_reference_quirks():
    assert spatial_task_score([TOP], [BOTTOM], "above") == pytest.approx(0.9)
    assert spatial_task_score([BOTTOM], [TOP], "above") == pytest.approx(0.4)
    assert spatial_task_score([TOP], [BOTTOM], "above", reference_quirks=True) == pytest.approx(0.4)


def test_nms_suppresses_iou_above_threshold_like_torchvision():
    boxes = [(0, 0, 10, 10), (1, 0, 11, 10), (20, 20, 30, 30), (0, 0, 10, 30)]
    assert nms(boxes, [0.9, 0.8, 0.7, 0.95], 0.5) == [3, 0, 2]  # box 1 overlaps box 0 (IoU 0.82)
    assert nms([(0, 0, 2, 1), (1, 0, 3, 1)], [0.9, 0.8], 1 / 3) == [0, 1]  # IoU exactly 1/3 is kept


def test_reference_nms_on_centre_format_boxes_never_merges_duplicates():
    duplicates = [(0.5, 0.5, 0.2, 0.2), (0.51, 0.5, 0.2, 0.2)]  # (cx, cy, w, h) read as corners
    assert nms(duplicates, [0.9, 0.8], 0.5) == [0, 1]
    corners = [(0.4, 0.4, 0.6, 0.6), (0.41, 0.4, 0.61, 0.6)]
    assert nms(corners, [0.9, 0.8], 0.5) == [0]


def test_numeracy_task_score():
    one = ((0.1, 0.1, 0.3, 0.3), 0.9)
    other = ((0.6, 0.6, 0.8, 0.8), 0.8)
    duplicate = ((0.11, 0.1, 0.31, 0.3), 0.7)
    assert numeracy_task_score({"clock": [one, other]}, [("clock", 2)]) == 1.0
    assert numeracy_task_score({"clock": [one, duplicate]}, [("clock", 2)]) == pytest.approx(0.2)
    assert numeracy_task_score({}, [("clock", 2)]) == 0.0
    assert numeracy_task_score({"cat": [one], "dog": [one, other]}, [("cat", 1), ("dog", 1)]) == pytest.approx(0.6)


def test_object_task_score():
    assert object_task_score({"cat": [1], "dog": []}, ["cat", "dog"]) == 0.5
    assert object_task_score({"cat": [1], "dog": [1]}, ["cat", "dog"]) == 1.0


# --------------------------------------------------------------------------- GIT VQA
def test_git_answer_is_next_token_after_cls_and_question(checkpoints):
    vqa = GitVqa(str(checkpoints["git"]))
    questions = [["Is this a red bench?", "Are there 2 dogs?"], ["Is this a cat?"]]
    imgs = images(2)
    answers = vqa.yes_probabilities(imgs, questions)
    pixels = vqa.processor([imgs[0]], return_tensors="pt").pixel_values
    ids = [vqa.tokenizer.cls_token_id] + vqa.tokenizer.encode("Is this a red bench?", add_special_tokens=False)
    with torch.no_grad():
        logits = vqa.model(pixel_values=pixels, input_ids=torch.tensor([ids])).logits[0, -1]
    p = torch.softmax(logits, -1)
    assert answers[0][0] == pytest.approx(float(p[vqa.yes_id] / (p[vqa.yes_id] + p[vqa.no_id])), abs=1e-5)
    vqa.batch_size = 1
    assert torch.allclose(torch.tensor(sum(answers, [])), torch.tensor(sum(vqa.yes_probabilities(imgs, questions), [])), atol=1e-5)


# --------------------------------------------------------------------------- the reward
def test_mixed_reward_combines_the_three_experts(checkpoints):
    unified = FixedUnified(0.25)
    reward = make_reward(checkpoints, unified=unified, box_threshold=0.0)
    metas = [COLOR_ATTR, POSITION, COUNTING]
    prompts = [Prompt(m["prompt"], i, m) for i, m in enumerate(metas)]
    out = score(reward, images(3), prompts)
    assert out.scores.shape == (3,)
    assert unified.seen == [m["prompt"] for m in metas]
    for s, meta, detail in zip(out.scores.tolist(), metas, out.details):
        assert detail["unified"] == 0.25
        assert detail["git_colour"] == pytest.approx(sum(detail["git_answers"].values()) / len(detail["git_answers"]))
        assert s == pytest.approx(mixed_score(meta["tag"], detail["detector"], detail["git_colour"], 0.25), abs=1e-6)
    assert [d["detector_task"] for d in out.details] == ["numeracy", "spatial", "numeracy"]
    assert out.details[1]["detector"] >= 0.4  # threshold 0: both objects are always detected


def test_batched_equals_one_by_one(checkpoints):
    reward = make_reward(checkpoints, box_threshold=0.2)
    prompts = [Prompt(m["prompt"], i, m) for i, m in enumerate([COLORS, POSITION, SINGLE])]
    imgs = images(3, seed=5)
    together = reward.evaluate(imgs, prompts).scores
    alone = torch.cat([reward.evaluate([im], [p]).scores for im, p in zip(imgs, prompts)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_no_detection_leaves_only_git_and_unified(checkpoints):
    reward = make_reward(checkpoints, unified=FixedUnified(1.0), box_threshold=1.0)
    out = reward.evaluate(images(1), [Prompt(SINGLE["prompt"], 0, SINGLE)])
    assert out.details[0]["detector"] == 0.0
    assert out.scores[0] == pytest.approx(0.2 * out.details[0]["git_colour"] + 0.2, abs=1e-6)


def test_prompts_without_geneval_include_are_an_error(checkpoints):
    with pytest.raises(ValueError, match="include"):
        make_reward(checkpoints).evaluate(images(1), [Prompt("a cat", 0, {"category": "color"})])


def test_missing_weights_error_names_the_checkpoint():
    reward = MixedReward(unified=FixedUnified())
    with pytest.raises(MissingCheckpointError, match="GIT VQA.*microsoft/git-large-vqav2"):
        reward.evaluate(images(1), [Prompt(SINGLE["prompt"], 0, SINGLE)])


def test_default_unified_expert_is_unified_reward_and_yaml_matches():
    config = yaml.safe_load(CONFIG.read_text())["model"]["reward"]
    module, name = config["class_path"].rsplit(".", 1)
    reward = getattr(importlib.import_module(module), name)(**config["init_args"])
    assert isinstance(reward, MixedReward) and isinstance(reward.unified, UnifiedReward)
    assert reward.unified.judge.model == "CodeGoat24/UnifiedReward-qwen-7b"
    assert reward.git.checkpoint == "microsoft/git-large-vqav2"
    assert reward.detector.checkpoint == "IDEA-Research/grounding-dino-tiny"
    assert isinstance(build("mixed", unified=FixedUnified()), MixedReward)
