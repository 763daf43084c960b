"""GenEval reward: the official rules on hand-built detections, mmdet post-processing on hand-made
logits, and the reward/CLI wired to tiny random Mask2Former + CLIP checkpoints (offline)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.bundled import BENCHMARKS
from data.prompt import Prompt
from rewards import geneval
from rewards.base import score
from rewards.geneval import COLORS, OBJECT_NAMES, ColorClassifier, Detection, GenEvalReward, color_crop, judge, read_object_names
from rewards.geneval_rules import Rules, check, color_targets, compute_iou, relative_position, select, summarize
from rewards.hub import MissingCheckpointError
from rewards.mask2former import Mask2FormerDetector, instance_postprocess, mask_scores, masks_to_boxes, resize_mask_logits, top_pairs
from tests.rewards.tiny_models import tiny_clip, tiny_mask2former

METADATA = BENCHMARKS / "geneval" / "evaluation_metadata.jsonl"
OBJECT_NAMES_FILE = BENCHMARKS / "geneval" / "object_names.txt"


@pytest.fixture(scope="module", autouse=True)
def offline(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf_cache")))
        yield


def det(x1, y1, x2, y2, s=0.95, color=None, mask=None):
    return Detection(box=(x1, y1, x2, y2), score=s, mask=mask, color=color)


def meta(tag, *include, exclude=()):
    m = {"tag": tag, "include": list(include), "prompt": "p"}
    if exclude:
        m["exclude"] = list(exclude)
    return m


def obj(cls, count=1, **kw):
    return {"class": cls, "count": count, **kw}


# ----------------------------------------------------------------------------- selection

def test_threshold_is_strict_and_depends_on_tag():
    m = meta("single_object", obj("bench"))
    assert judge(m, {"bench": [det(0, 0, 5, 5, s=0.3)]}) == (False, "expected bench>=1, found 0")
    assert judge(m, {"bench": [det(0, 0, 5, 5, s=0.30001)]}) == (True, "")
    assert judge(m, {"bench": [det(0, 0, 5, 5, s=0.3)]}, Rules(threshold=0.29)) == (True, "")


def test_counting_threshold_applies_to_every_class_of_a_counting_prompt():
    m = meta("counting", obj("cat"), obj("dog", 2), exclude=[obj("dog", 3)])
    dogs = [det(0, 0, 5, 5, s=0.95), det(0, 0, 5, 5, s=0.95), det(0, 0, 5, 5, s=0.9)]
    assert judge(m, {"cat": [det(0, 0, 5, 5, s=0.9)], "dog": dogs}) == (False, "expected cat>=1, found 0")
    assert judge(m, {"cat": [det(0, 0, 5, 5, s=0.91)], "dog": dogs}) == (True, "")
    # the same scores pass the ordinary 0.3 threshold in a non-counting prompt
    assert judge({**m, "tag": "two_object"}, {"cat": [det(0, 0, 5, 5, s=0.9)], "dog": dogs}) == (False, "expected dog<3, found 3")


def test_counting_means_exactly_n():
    m = meta("counting", obj("clock", 2), exclude=[obj("clock", 3)])
    two, three = [det(0, 0, 5, 5)] * 2, [det(0, 0, 5, 5)] * 3
    assert judge(m, {"clock": two}) == (True, "")
    assert judge(m, {"clock": three}) == (False, "expected clock<3, found 3")
    assert judge(m, {"clock": two[:1]}) == (False, "expected clock>=2, found 1")
    assert judge(m, {"clock": two + [det(0, 0, 5, 5, s=0.5)]}) == (True, "")  # third below 0.9


def test_at_most_max_objects_per_class_highest_first():
    dets = [det(0, 0, 5, 5, s=0.4 + i / 100) for i in range(20)]
    kept = select(meta("two_object"), {"bench": dets})["bench"]
    assert [d.score for d in kept] == sorted((d.score for d in dets), reverse=True)[:16]
    assert judge(meta("counting", exclude=[obj("bench", 17)]), {"bench": [det(0, 0, 5, 5)] * 20}) == (True, "")
    assert judge(meta("counting", exclude=[obj("bench", 16)]), {"bench": [det(0, 0, 5, 5)] * 20}) == (False, "expected bench<16, found 16")
    assert len(select(meta("two_object"), {"bench": dets}, Rules(max_objects=3))["bench"]) == 3


def test_score_ties_put_the_later_detection_first_like_reversed_argsort():
    a, b = det(0, 0, 5, 5, s=0.5, color="red"), det(0, 0, 5, 5, s=0.5, color="blue")
    assert select(meta("colors"), {"car": [a, b]})["car"] == [b, a]
    m = meta("colors", obj("car", color="red"))
    assert judge(m, {"car": [a, b]}) == (False, "expected red car>=1, found 0 red; and 1 blue")
    assert judge(m, {"car": [b, a]}) == (True, "")


def test_empty_classes_are_dropped_from_the_selection():
    assert select(meta("two_object"), {"bench": [det(0, 0, 5, 5, s=0.1)], "cat": []}) == {}


def test_iou_uses_the_plus_one_pixel_convention():
    assert compute_iou((0, 0, 9, 9), (0, 0, 9, 9)) == 1
    assert compute_iou((0, 0, 9, 9), (10, 0, 19, 9)) == 0
    assert compute_iou((0, 0, 9, 9), (5, 0, 14, 9)) == pytest.approx(50 / 150)
    assert compute_iou((5, 5, 4, 4), (5, 5, 4, 4)) == 0  # degenerate boxes: empty union


def test_nms_is_off_by_default_and_per_class_when_enabled():
    same = [det(0, 0, 9, 9, s=0.9), det(0, 0, 9, 9, s=0.8), det(5, 0, 14, 9, s=0.7)]
    assert len(select(meta("two_object"), {"cat": same})["cat"]) == 3
    kept = select(meta("two_object"), {"cat": same, "dog": same[:2]}, Rules(max_overlap=0.5))
    assert [d.score for d in kept["cat"]] == [0.9, 0.7] and [d.score for d in kept["dog"]] == [0.9]
    # IoU equal to max_overlap is suppressed (kept only if IoU < max_overlap)
    assert [d.score for d in select(meta("two_object"), {"cat": same}, Rules(max_overlap=50 / 150))["cat"]] == [0.9]


# ----------------------------------------------------------------------------- objects and colours

def test_single_and_two_object_rules_ignore_other_classes():
    m = meta("two_object", obj("bench"), obj("sports ball"))
    full = {"bench": [det(0, 0, 5, 5)], "sports ball": [det(0, 0, 5, 5)], "cat": [det(0, 0, 5, 5)] * 5}
    assert judge(m, full) == (True, "")
    assert judge(m, {"bench": [det(0, 0, 5, 5)]}) == (False, "expected sports ball>=1, found 0")
    assert judge(m, {}) == (False, "expected bench>=1, found 0\nexpected sports ball>=1, found 0")


def test_color_reason_tallies_colors_in_official_order():
    m = meta("colors", obj("fire hydrant", 2, color="blue"))
    dets = [det(0, 0, 5, 5, s=0.9, color="white"), det(0, 0, 5, 5, s=0.8, color="red")]
    assert judge(m, {"fire hydrant": dets}) == (False, "expected blue fire hydrant>=2, found 0 blue; and 1 red, 1 white")
    dets[1].color = "blue"
    assert judge(m, {"fire hydrant": dets}) == (False, "expected blue fire hydrant>=2, found 1 blue; and 1 blue, 1 white")
    dets[0].color = "blue"
    assert judge(m, {"fire hydrant": dets}) == (True, "")


def test_color_is_read_only_from_the_top_count_detections():
    m = meta("color_attr", obj("wine glass", color="purple"), obj("apple", color="black"))
    glasses = [det(0, 0, 5, 5, s=0.9, color="purple"), det(0, 0, 5, 5, s=0.8)]  # second never classified
    assert judge(m, {"wine glass": glasses, "apple": [det(0, 0, 5, 5, color="black")]}) == (True, "")
    assert judge(m, {"wine glass": glasses, "apple": [det(0, 0, 5, 5, color="red")]}) == (
        False, "expected black apple>=1, found 0 black; and 1 red")


def test_a_needed_but_unclassified_color_is_an_error_not_a_guess():
    with pytest.raises(ValueError, match="colour of a 'car'"):
        judge(meta("colors", obj("car", color="red")), {"car": [det(0, 0, 5, 5)]})
    with pytest.raises(ValueError, match="not one of GenEval"):
        det(0, 0, 1, 1, color="grey")


def test_color_targets_are_the_top_count_detections_of_color_clauses():
    cars = [det(0, 0, 5, 5, s=0.9), det(0, 0, 5, 5, s=0.8), det(0, 0, 5, 5, s=0.7)]
    m = meta("colors", obj("car", 2, color="red"), obj("car", 1, color="blue"), obj("cat"), obj("dog", color="red"))
    sel = select(m, {"car": cars, "cat": [det(0, 0, 5, 5)]})
    targets = color_targets(m, sel)
    assert list(targets) == ["car"] and targets["car"] == cars[:2]  # deduplicated, dog missing, cat no colour
    assert color_targets(meta("colors", obj("car", 4, color="red")), sel) == {}  # too few: no colour read


# ----------------------------------------------------------------------------- position

def test_relative_position_directions_and_overlap():
    b = (0, 0, 10, 10)
    assert relative_position((30, 0, 40, 10), b) == {"right of"}
    assert relative_position((-30, 0, -20, 10), b) == {"left of"}
    assert relative_position((0, -30, 10, -20), b) == {"above"}
    assert relative_position((0, 30, 10, 40), b) == {"below"}
    assert relative_position((30, 30, 40, 40), b) == {"right of", "below"}
    assert relative_position((1, 1, 11, 11), b) == set()  # too close in both directions
    assert relative_position((0.6, 0, 10.6, 10), b) == set()  # offset inside the margin counts as none
    assert relative_position(b, b) == set()  # zero offset: no division by zero


def test_relative_position_margin_boundary_is_strict():
    b = (0, 0, 25, 10)  # widths sum 50 -> margin 0.1 * 50 = 5
    assert relative_position((10, 0, 35, 10), b) == set()  # offset 10, revised 5, dx = 0.5 exactly
    assert relative_position((11, 0, 36, 10), b) == {"right of"}  # dx = 6 / 11
    assert relative_position((5, 0, 30, 10), b) == set()  # revised 0 -> no relation at all
    assert relative_position((10, 0, 35, 10), b, margin=0.0) == {"right of"}


def test_relative_position_divides_by_the_original_offset_norm():
    # offset (10, 10); margins 0.1 * (25 + 25) = 5 and 0.1 * (10 + 10) = 2 -> revised (5, 8)
    # dx = 5 / sqrt(200) = 0.354, dy = 8 / sqrt(200) = 0.566: only "below" (a renormalised
    # revised offset would give dx = 0.53 and also "right of")
    assert relative_position((10, 10, 35, 20), (0, 0, 25, 10)) == {"below"}
    assert 8 / math.sqrt(200) > 0.5 > 5 / math.sqrt(200)


POS = meta("position", obj("teddy bear"), obj("dog", position=["right of", 0]))


def test_position_rule_and_official_reasons():
    bear, right, left = det(0, 0, 10, 10), det(30, 0, 40, 10), det(-30, 0, -20, 10)
    assert judge(POS, {"teddy bear": [bear], "dog": [right]}) == (True, "")
    assert judge(POS, {"teddy bear": [bear], "dog": [left]}) == (False, "expected dog right of target, found left of target")
    assert judge(POS, {"teddy bear": [bear], "dog": [det(1, 1, 11, 11)]}) == (False, "expected dog right of target, found  target")
    assert judge(POS, {"teddy bear": [bear], "dog": [det(30, 30, 40, 40)]}) == (True, "")  # extra "below" is fine
    assert judge(POS, {"teddy bear": [bear], "dog": [det(-30, 30, -20, 40)]}) == (
        False, "expected dog right of target, found left of and below target")


def test_position_with_a_missing_group_or_object():
    assert judge(POS, {"dog": [det(30, 0, 40, 10)]}) == (False, "expected teddy bear>=1, found 0\nno target for dog to be right of")
    assert judge(POS, {"teddy bear": [det(0, 0, 10, 10)]}) == (False, "expected dog>=1, found 0")
    with pytest.raises(ValueError, match="include group 1"):
        judge(meta("position", obj("dog", position=["right of", 1]), obj("cat")), {"dog": [det(0, 0, 1, 1)]})


def test_position_holds_for_every_object_target_pair_of_the_top_count():
    m = meta("position", obj("cat", 2), obj("dog", 1, position=["above", 0]))
    dog, under, over = det(20, 0, 30, 10), det(0, 50, 10, 60, s=0.9), det(40, -50, 50, -40, s=0.8)
    assert judge(m, {"cat": [under, det(40, 50, 50, 60, s=0.8)], "dog": [dog]}) == (True, "")
    assert judge(m, {"cat": [under, over], "dog": [dog]}) == (False, "expected dog above target, found below target")
    over.score = 0.5  # now third: outside the top 2, ignored
    assert judge(m, {"cat": [under, over, det(40, 50, 50, 60, s=0.8)], "dog": [dog]}) == (True, "")


def test_a_failed_color_skips_the_position_check_and_fails_dependants():
    m = meta("position", obj("cat", color="red"), obj("dog", color="blue", position=["left of", 0]))
    dets = {"cat": [det(30, 0, 40, 10, color="green")], "dog": [det(0, 0, 10, 10, color="blue")]}
    ok, reason = judge(m, dets)
    assert not ok and reason.splitlines() == ["expected red cat>=1, found 0 red; and 1 green", "no target for dog to be left of"]
    dets["dog"][0].color = "red"
    assert judge(m, dets)[1].splitlines()[1] == "expected blue dog>=1, found 0 blue; and 1 red"


def test_fraction_counts_satisfied_clauses():
    m = meta("counting", obj("clock", 2), exclude=[obj("clock", 3)])
    verdict = check(m, select(m, {"clock": [det(0, 0, 5, 5)] * 3}))
    assert (verdict.correct, verdict.clauses, verdict.fraction) == (False, 2, 0.5)
    assert check(m, {}).fraction == 0.5  # include fails, exclude holds


def test_every_official_prompt_is_judged_and_satisfiable():
    lines = [json.loads(line) for line in METADATA.read_text().splitlines()]
    assert len(lines) == 553
    for m in lines:
        ok, reason = judge(m, {})
        assert not ok and reason.startswith("expected ")
        # one detection per required object, placed and coloured as asked
        dets = {}
        for i, req in enumerate(m["include"]):
            x = {None: 0, "right of": 100, "left of": -100, "above": 0, "below": 0}[req.get("position", [None])[0]]
            y = {"above": -100, "below": 100}.get(req.get("position", [None])[0], 0)
            dets[req["class"]] = [det(x, y, x + 20, y + 20, s=0.95, color=req.get("color")) for _ in range(req["count"])]
        assert judge(m, dets) == (True, ""), m


# ----------------------------------------------------------------------------- summary

def test_summary_averages_task_accuracies_not_images():
    rows = [
        {"tag": "counting", "correct": True, "metadata": "a"},
        {"tag": "counting", "correct": False, "metadata": "a"},
        {"tag": "colors", "correct": False, "metadata": "b"},
        {"tag": "colors", "correct": False, "metadata": "b"},
        {"tag": "colors", "correct": False, "metadata": "c"},
        {"tag": "colors", "correct": True, "metadata": "c"},
        {"tag": "colors", "correct": False, "metadata": "d"},
        {"tag": "colors", "correct": False, "metadata": "d"},
    ]
    s = summarize(rows)
    assert (s.images, s.prompts, s.correct_images, s.correct_prompts) == (8, 4, 2 / 8, 2 / 4)
    assert s.tasks == {"counting": (1, 2), "colors": (1, 6)} and list(s.tasks) == ["counting", "colors"]
    assert s.overall == pytest.approx((1 / 2 + 1 / 6) / 2)
    with pytest.raises(ValueError):
        summarize([])


def test_print_summary_shows_the_official_lines():
    from rich.console import Console

    console = Console(record=True, width=100)
    geneval.print_summary(summarize([{"tag": "position", "correct": True, "metadata": "x"}] * 3), console)
    text = console.export_text()
    assert "Total images: 3" in text and "% correct prompts: 100.00%" in text
    assert "position" in text and "3 / 3" in text and "Overall score (avg. over tasks): 1.00000" in text


# ----------------------------------------------------------------------------- mmdet post-processing

def test_top_pairs_softmax_drops_no_object_and_ranks_query_class_pairs():
    logits = torch.log(torch.tensor([[0.5, 0.1, 0.1, 0.3], [0.2, 0.6, 0.1, 0.1]]))  # 3 classes + no-object
    queries, labels, probs = top_pairs(logits, max_per_image=3)
    assert queries.tolist() == [1, 0, 1] and labels.tolist() == [1, 0, 0]
    assert probs.tolist() == pytest.approx([0.6, 0.5, 0.2])
    assert len(top_pairs(logits, max_per_image=100)[0]) == 6  # capped at Q * C


def test_mask_score_is_mean_sigmoid_inside_the_binary_mask():
    logits = torch.tensor([[[2.0, -1.0], [0.0, 3.0]], [[-1.0, -2.0], [-3.0, -4.0]]])
    binary, score = mask_scores(logits)
    assert binary[0].tolist() == [[True, False], [False, True]]  # logit 0 is outside
    expected = (torch.sigmoid(torch.tensor(2.0)) + torch.sigmoid(torch.tensor(3.0))) / (2 + 1e-6)
    assert score[0].item() == pytest.approx(expected.item()) and score[1].item() == 0


def test_masks_to_boxes_is_mmdet_mask2bbox():
    masks = torch.zeros(3, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 5, 7] = True
    assert masks_to_boxes(masks).tolist() == [[2, 1, 5, 3], [7, 5, 8, 6], [0, 0, 0, 0]]
    assert masks_to_boxes(masks[:0]).shape == (0, 4)


def test_instance_postprocess_multiplies_class_and_mask_scores():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])  # 2 classes + no-object
    mask = torch.full((2, 4, 4), -5.0)
    mask[0, :2, :2], mask[1, 1:, 1:] = 4.0, 1.0
    inst = instance_postprocess(probs.log(), mask)
    mask0, mask1 = torch.sigmoid(torch.tensor(4.0)).item(), torch.sigmoid(torch.tensor(1.0)).item()
    expected = sorted([(0.7 * mask0, 0, 0), (0.2 * mask0, 1, 0), (0.1 * mask1, 0, 1), (0.1 * mask1, 1, 1)], reverse=True)
    assert inst.scores.tolist() == pytest.approx([e[0] for e in expected], rel=1e-5)
    assert inst.labels.tolist() == [e[1] for e in expected]
    assert inst.boxes[0].tolist() == [0, 0, 2, 2] and inst.masks.shape == (4, 4, 4)
    kept = instance_postprocess(probs.log(), mask, min_score=0.15)
    assert kept.labels.tolist() == [0, 1] and kept.boxes.tolist() == [[0, 0, 2, 2]] * 2


def test_resize_mask_logits_crops_padding_before_resizing_to_the_image():
    logits = torch.full((1, 4, 4), -5.0)
    logits[0, :2, :3] = 5.0  # valid region of a padded input
    out = resize_mask_logits(logits, padded=(4, 4), valid=(2, 3), original=(4, 6))
    assert out.shape == (1, 4, 6) and torch.allclose(out, torch.full_like(out, 5.0))


# ----------------------------------------------------------------------------- tiny checkpoints

@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("geneval_ckpt")
    return {
        "random": str(tiny_mask2former(root / "m2f_random")),
        "bench": str(tiny_mask2former(root / "m2f_bench", always="bench")),  # every query: a whole-image bench
        "clip": str(tiny_clip(root / "clip", image_size=32, patch_size=8)),
    }


def _reward(ckpt, detector="bench", **kw):
    return GenEvalReward(detector=ckpt[detector], clip_model=ckpt["clip"], detector_size=[64, 96], **kw)


def _image(h=40, w=60, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def _prompt(m, i=0):
    return Prompt(m["prompt"], i, m)


def test_detector_returns_instances_at_each_image_resolution(ckpt):
    detector = Mask2FormerDetector(ckpt["random"], shortest_edge=64, longest_edge=96)
    out = detector([_image(40, 60), _image(50, 30, seed=1)])
    for inst, (h, w) in zip(out, [(40, 60), (50, 30)]):
        assert inst.masks.shape == (100, h, w) and inst.masks.dtype == torch.bool  # top-100 of 8 x 80 pairs
        assert (inst.scores[:-1] >= inst.scores[1:]).all() and ((inst.scores >= 0) & (inst.scores <= 1)).all()
        assert (inst.boxes[:, 2] <= w).all() and (inst.boxes[:, 3] <= h).all() and (inst.labels < 80).all()
    floor = float(out[0].scores[10])
    assert (detector([_image(40, 60)], min_score=floor)[0].scores > floor).all()


def test_detector_batches_same_size_images_like_single_ones(ckpt):
    detector = Mask2FormerDetector(ckpt["random"], shortest_edge=64, longest_edge=96)
    images = [_image(seed=2), _image(seed=3)]
    batched, single = detector(images), [detector([im])[0] for im in images]
    for b, s in zip(batched, single):
        assert torch.allclose(b.scores, s.scores, atol=1e-5) and torch.equal(b.labels, s.labels)


def test_reward_scores_correct_images_one_and_wrong_images_zero(ckpt):
    reward = _reward(ckpt)
    reward.setup(device="cpu", dtype=torch.float32)
    bench, cow = meta("single_object", obj("bench")), meta("single_object", obj("cow"))
    two = meta("counting", obj("bench", 2), exclude=[obj("bench", 3)])
    out = score(reward, [_image(), _image(seed=1), _image(32, 32, seed=2)], [_prompt(bench), _prompt(cow, 1), _prompt(two, 2)])
    assert out.scores.tolist() == [1.0, 0.0, 0.0] and out.scores.dtype == torch.float32
    d = out.details
    assert d[0]["correct"] and d[0]["reason"] == "" and d[1]["reason"] == "expected cow>=1, found 0"
    assert d[2]["reason"] == "expected bench<3, found 8"  # 8 duplicate queries, no NMS
    assert [b[:4] for b in d[2]["detections"]["bench"]] == [[0, 0, 32, 32]] * 8
    json.dumps(d)
    nms = _reward(ckpt, max_overlap=0.5).evaluate([_image(32, 32)], [_prompt(two)])
    assert nms.details[0]["reason"] == "expected bench>=2, found 1"
    frac = _reward(ckpt, score="fraction").evaluate([_image(32, 32)], [_prompt(two)])
    assert frac.scores.tolist() == [0.5]
    assert reward.evaluate([], []).scores.shape == (0,)


def test_reward_classifies_colour_only_for_top_count_crops(ckpt, monkeypatch):
    reward = _reward(ckpt)
    seen = []

    def fake_colors(crops, classname):
        seen.append((classname, [c.size for c in crops]))
        return ["red"] * len(crops)

    m = meta("colors", obj("bench", 2, color="red"))
    reward.evaluate([_image(32, 32)], [_prompt(meta("single_object", obj("bench")))])  # load models
    monkeypatch.setattr(reward, "colors", fake_colors)
    out = reward.evaluate([_image(32, 32), _image(40, 60, seed=1)], [_prompt(m), _prompt(meta("single_object", obj("bench")), 1)])
    assert seen == [("bench", [(32, 32), (32, 32)])]  # 2 of the 8 detections, 2nd image needs none
    assert out.scores.tolist() == [1.0, 1.0] and out.details[0]["colors"] == {"bench": ["red", "red"]}


def test_color_crop_paints_outside_the_mask_grey_and_crops_to_the_box():
    image = Image.new("RGB", (6, 4), (255, 0, 0))
    mask = np.zeros((4, 6), dtype=bool)
    mask[1:3, 1:3] = True
    crop = color_crop(image, det(0, 0, 4, 3, mask=mask))
    assert crop.size == (4, 3)
    assert crop.getpixel((1, 1)) == (255, 0, 0) and crop.getpixel((3, 2)) == (0x99, 0x99, 0x99)
    assert color_crop(image, det(0, 0, 4, 3, mask=mask), bgcolor="original").getpixel((3, 2)) == (255, 0, 0)
    assert color_crop(image, det(0, 0, 4, 3, mask=mask), crop=False).size == (6, 4)


def test_color_classifier_averages_normalised_template_embeddings(ckpt):
    clf = ColorClassifier(ckpt["clip"])
    weights = clf.text_weights("tv remote")
    assert weights.shape == (10, 16) and torch.allclose(weights.norm(dim=-1), torch.ones(10))
    texts = [t.format(c="pink", classname="tv remote") for t in geneval.COLOR_TEMPLATES]
    emb = clf.model.get_text_features(**clf.tokenizer(texts, padding=True, return_tensors="pt")).pooler_output
    manual = torch.nn.functional.normalize(torch.nn.functional.normalize(emb, dim=-1).mean(0), dim=-1)
    assert torch.allclose(weights[COLORS.index("pink")], manual, atol=1e-5)
    crops = [_image(20, 30, seed=s) for s in range(3)]
    batched = clf(crops, "tv remote")
    assert batched == [clf([c], "tv remote")[0] for c in crops] and set(batched) <= set(COLORS)


def test_reward_follows_the_backbone_dtype_only_when_asked(ckpt):
    follow, fixed = _reward(ckpt, dtype=None), _reward(ckpt)
    prompt = _prompt(meta("single_object", obj("bench")))
    for reward in (follow, fixed):
        reward.setup(device="cpu", dtype=torch.bfloat16)
        assert reward.evaluate([_image(32, 32)], [prompt]).scores.tolist() == [1.0]
    assert follow.detector.model.dtype == torch.bfloat16 and follow.colors.model.dtype == torch.bfloat16
    assert fixed.detector.model.dtype == torch.float32
    follow.setup(device="cpu", dtype=torch.float32)  # moving after load
    assert follow.detector.model.dtype == torch.float32 and follow.colors.model.dtype == torch.float32


def test_missing_weights_name_the_checkpoint(ckpt, tmp_path):
    prompt = [_prompt(meta("single_object", obj("bench")))]
    with pytest.raises(MissingCheckpointError, match="facebook/mask2former-swin-small-coco-instance"):
        GenEvalReward().evaluate([_image()], prompt)
    missing = str(tmp_path / "no-clip")
    with pytest.raises(MissingCheckpointError, match="colour classifier.*no-clip"):
        GenEvalReward(detector=ckpt["bench"], clip_model=missing).evaluate([_image()], prompt)


def test_bad_metadata_and_names_are_errors(ckpt, tmp_path):
    reward = _reward(ckpt)
    with pytest.raises(ValueError, match="tag, include"):
        reward.evaluate([_image()], [Prompt("a cat", 3, {})])
    with pytest.raises(ValueError, match="unicorn"):
        reward.evaluate([_image()], [_prompt(meta("single_object", obj("unicorn")))])
    assert read_object_names() == OBJECT_NAMES and len(OBJECT_NAMES) == 80
    assert read_object_names(str(OBJECT_NAMES_FILE)) == OBJECT_NAMES
    (tmp_path / "names.txt").write_text("cat\ndog\n")
    with pytest.raises(ValueError, match="expected 80"):
        read_object_names(str(tmp_path / "names.txt"))


def test_cli_writes_official_results_and_summary(ckpt, tmp_path, capsys):
    root = tmp_path / "images"
    layout = {
        "00000": (meta("single_object", obj("bench")), ["0000.png", "00001.png"]),
        "00001": (meta("single_object", obj("cow")), ["0000.png"]),
        "00002": (meta("counting", obj("bench", 2), exclude=[obj("bench", 3)]), ["0000.png"]),
    }
    for folder, (m, names) in layout.items():
        (root / folder / "samples").mkdir(parents=True)
        (root / folder / "metadata.jsonl").write_text(json.dumps(m))
        for i, name in enumerate(names):
            _image(seed=i).save(root / folder / "samples" / name)
        _image().save(root / folder / "grid.png")
        _image().save(root / folder / "samples" / "notes.png")  # not digits: skipped
    (root / "logs").mkdir()  # not digits: skipped
    out = tmp_path / "res" / "results.jsonl"
    summary = geneval.main([str(root), "--out", str(out), "--detector", ckpt["bench"], "--clip_model", ckpt["clip"],
                            "--detector_size", "[64, 96]", "--device", "cpu", "--batch_size", "3"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [list(r) for r in rows] == [["filename", "tag", "prompt", "correct", "reason", "metadata", "details"]] * 4
    assert [Path(r["filename"]).relative_to(root).as_posix() for r in rows] == [
        "00000/samples/0000.png", "00000/samples/00001.png", "00001/samples/0000.png", "00002/samples/0000.png"]
    assert [r["correct"] for r in rows] == [True, True, False, False]
    assert rows[3]["reason"] == "expected bench<3, found 8" and json.loads(rows[2]["metadata"]) == layout["00001"][0]
    assert list(json.loads(rows[0]["details"])) == ["bench"] and len(json.loads(rows[0]["details"])["bench"][0]) == 5
    assert summary.tasks == {"single_object": (2, 3), "counting": (0, 1)}
    assert summary.overall == pytest.approx((2 / 3 + 0) / 2) and summary.prompts == 3
    assert "Overall score (avg. over tasks): 0.33333" in capsys.readouterr().out
