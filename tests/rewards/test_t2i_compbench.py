"""T2I-CompBench reward: the official rules exhaustively, and the wiring on tiny random models.

Models are randomly initialised tiny configs of the real classes (BLIP VQA, CLIP, Grounding
DINO with a Swin backbone, DPT), saved with ``save_pretrained`` and loaded back through the
reward's checkpoint options; tokenizers are built offline from small vocabularies.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from transformers import BertTokenizerFast

from data.bundled import BENCHMARKS
from data.prompt import Prompt
from rewards import compbench_rules as rules
from rewards.base import build, score
from rewards.blip_vqa import BlipVqa
from rewards.compbench_text import drop_adjectives, noun_chunks, nouns
from rewards.grounding import GroundingDetector, grounding_caption, phrase_token_map
from rewards.hub import MissingCheckpointError
from rewards.t2i_compbench import T2ICompBenchReward
from tests.rewards.tiny_models import VOCAB_SIZE, tiny_blip, tiny_clip, tiny_dpt, tiny_grounding_dino

BENCH = BENCHMARKS / "t2i_compbench"
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "rewards" / "t2i_compbench.yaml"


# --------------------------------------------------------------------------- tiny models
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_compbench")
    return {
        "blip": tiny_blip(root / "blip"),
        "clip": tiny_clip(root / "clip", image_size=32, patch_size=16),
        "gdino": tiny_grounding_dino(root / "gdino"),
        "dpt": tiny_dpt(root / "dpt"),
    }


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("compbench_data")
    (path / "complex_val_spatial.txt").write_text("The fluffy cat is on the left of the soft pillow.\r\nThe red hat was on top of the brown coat rack.")
    (path / "complex_val_action.txt").write_text("The black phone was resting on the brown charger.")
    (path / "new_objects.txt").write_text("dog - dogs\ncat - cats\nteddy bear - teddy bears")
    return path


def make_reward(checkpoints, data_dir=None, **kwargs) -> T2ICompBenchReward:
    options = dict(
        blip_model=str(checkpoints["blip"]), blip_image_size=48, clip_model=str(checkpoints["clip"]),
        detector_model=str(checkpoints["gdino"]), depth_model=str(checkpoints["dpt"]), depth_image_size=32,
        data_dir=None if data_dir is None else str(data_dir),
    )
    reward = T2ICompBenchReward(**{**options, **kwargs})
    reward.setup(device="cpu", dtype=torch.float32)
    return reward


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)) for _ in range(n)]


# --------------------------------------------------------------------------- prompt parsing
@pytest.mark.parametrize(
    "prompt, questions",
    [
        ("a green bench and a blue bowl", ["a green bench?", "a blue bowl?"]),
        ("rubber sole shoes and fluffy clouds", ["rubber sole shoes?", "fluffy clouds?"]),
        ("a triangular slice of bread and a rectangular bread basket", ["a triangular slice?", "bread?", "a rectangular bread basket?"]),
        ("an oblong cucumber and a teardrop plum", ["an oblong cucumber?", "a teardrop plum?"]),
        ("The red hat was on top of the brown coat rack.", ["the red hat?", "the brown coat rack?"]),
        ("The green plant was on the right of the white wall.", ["the green plant?", "the white wall?"]),
        ("The striped black and white cat lay next to the soft grey blanket.", ["the striped black and white cat?", "the soft grey blanket?"]),
        ("A long, narrow black kitchen with yellow and white floor tiles.", ["a long, narrow black kitchen?", "yellow and white floor tiles?"]),
        ("a red cup and a blue orange", ["a red cup?", "a blue orange?"]),
        ("a painting on the top of a rabbit", ["a painting?", "the top?", "a rabbit?"]),
    ],
)
def test_blip_questions_on_benchmark_lines(prompt, questions):
    assert rules.blip_questions(prompt) == questions


def test_blip_questions_exclude_and_cap_at_np_num():
    prompt = "a cat, a dog, a cow, a pig, a hen, a fox, a bee, an owl, a rat and a bat on the left"
    assert len(noun_chunks(prompt)) == 11
    assert rules.blip_questions(prompt) == [f"{c}?" for c in noun_chunks(prompt)[:8]]
    assert rules.blip_questions(prompt, np_num=2) == ["a cat?", "a dog?"]
    assert "the left?" not in rules.blip_questions("a cat on the left of a dog", np_num=8)


def test_pre_question_lowercases_and_strips_blip_punctuation():
    assert rules.pre_question('The "Red" (hat): ~big!*#;?') == "the red hat big?"
    assert rules.pre_question("a b c d", max_words=2) == "a b"


@pytest.mark.parametrize("name", ["color_val.txt", "shape_val.txt", "texture_val.txt", "complex_val.txt"])
def test_every_attribute_prompt_yields_questions(name):
    for line in (BENCH / name).read_text(encoding="utf-8").splitlines():
        questions = rules.blip_questions(line.strip())
        assert 1 <= len(questions) <= 8, line
        assert all(q.endswith("?") and q == q.lower() for q in questions), line


@pytest.mark.parametrize(
    "prompt, objects",
    [
        ("a giraffe next to a lamp", ("giraffe", "lamp")),
        ("a girl on the top of a frog", ("girl", "frog")),
        ("a mouse on side of a key", ("mouse", "key")),
        ("a dog in front of a desk", ("dog", "desk")),
        ("a frog hidden by a candle", ("frog", "candle")),
    ],
)
def test_spatial_objects_are_first_and_last_noun(prompt, objects):
    assert rules.spatial_objects(prompt) == objects


def test_spatial_prompt_without_noun_is_an_error():
    with pytest.raises(ValueError, match="no noun"):
        rules.spatial_objects("next to and near")


def test_relation_is_the_first_vocabulary_word_found():
    assert rules.relation_in("a mouse on side of a key", rules.SPATIAL_RELATIONS) == "on side of"
    assert rules.relation_in("a cat on the top of a dog", rules.SPATIAL_RELATIONS) == "on the top of"
    assert rules.relation_in("The hat was on top of the rack.", rules.SPATIAL_RELATIONS) == "on top of"
    assert rules.relation_in("a cat nearby the left of a dog", rules.SPATIAL_RELATIONS) == "near"  # substring, official order
    assert rules.relation_in("a cat and a dog", rules.SPATIAL_RELATIONS) is None
    assert rules.relation_in("a frog hidden by a candle", rules.SPATIAL_3D_RELATIONS) == "hidden"


def test_complex_objects_surround_the_preposition():
    assert rules.complex_spatial_objects("The fluffy cat is on the left of the soft pillow.") == ("cat", "pillow")
    assert rules.complex_spatial_objects("The red hat was on top of the brown coat rack.") == ("hat", "coat")
    assert rules.complex_spatial_objects("The square book was next to the green notebook.") == ("book", "notebook")
    assert rules.complex_spatial_objects("The black phone was resting on the brown charger.") is None
    assert rules.complex_spatial_objects("The cat is near the dog and next to the cow.") is None  # 4 objects


def test_complex_clip_text_drops_adjectives():
    assert drop_adjectives("The fluffy cat is on the left of the soft pillow.") == "The cat is on the left of the pillow ."
    assert nouns("The fluffy cat is on the left of the soft pillow.") == ["cat", "left", "pillow"]


# --------------------------------------------------------------------------- 2D geometry
def box_at(cx: float, cy: float, w: float = 10, h: float = 10) -> rules.Box:
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


@pytest.mark.parametrize("locality", ["next to", "on side of", "near"])
def test_next_to_is_one_within_150px_on_either_axis(locality):
    assert rules.determine_position(locality, box_at(0, 0), box_at(149, 400)) == 1.0
    assert rules.determine_position(locality, box_at(0, 0), box_at(400, 149)) == 1.0
    assert rules.determine_position(locality, box_at(0, 0), box_at(300, 200)) == pytest.approx(150 / 300)


@pytest.mark.parametrize(
    "locality, other, expected",
    [
        ("on the left of", (100, 10), 1.0),  # obj2 to the right -> obj1 is left of it
        ("on the left of", (-100, 10), 0.0),
        ("on the left of", (100, 150), 0.0),  # vertical offset dominates
        ("on the right of", (-100, 10), 1.0),
        ("on the right of", (100, 10), 0.0),
        ("on the top of", (10, 100), 1.0),  # image y grows downward
        ("on the top of", (10, -100), 0.0),
        ("on the bottom of", (10, -100), 1.0),
        ("on the bottom of", (100, -10), 0.0),
        ("on top of", (10, 100), 0.0),  # complex-prompt wording: no branch, 0 as official
        (None, (100, 10), 0.0),
        ("right of", (-100, 10), 1.0),  # MILR GroundingDINO aliases
        ("left of", (100, 10), 1.0),
        ("below", (10, -100), 1.0),
        ("top of", (10, 100), 1.0),
    ],
)
def test_directional_relations(locality, other, expected):
    assert rules.determine_position(locality, box_at(0, 0), box_at(*other)) == expected


def test_overlapping_directional_boxes_score_iou_threshold_over_iou():
    box1, box2 = (0, 0, 100, 100), (40, 10, 140, 110)
    overlap = rules.iou(box1, box2)
    assert overlap > 0.1
    assert rules.determine_position("on the left of", box1, box2) == pytest.approx(0.1 / overlap)
    assert rules.iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


@pytest.mark.parametrize(
    "size, frame",
    [((512, 512), (479, 479)), ((384, 384), (479, 479)), ((1024, 512), (480, 240)), ((512, 1024), (240, 480)), ((500, 480), (480, 461))],
)
def test_official_frame_is_torchvision_resize_479_max_480(size, frame):
    assert rules.official_frame_size(*size) == frame


def test_150px_threshold_is_measured_in_the_479px_frame():
    # 384-px image: 120 px apart is 149.7 px in the official frame (next to), 121 px is 150.9 (not)
    near = [rules.to_official_frame(b, 384, 384) for b in (box_at(100, 100), box_at(220, 220))]
    far = [rules.to_official_frame(b, 384, 384) for b in (box_at(100, 100), box_at(221, 221))]
    assert rules.determine_position("next to", *near) == 1.0
    assert rules.determine_position("next to", *far) == pytest.approx(150 / (121 * 479 / 384))


def test_2d_combination_and_below_half_zeroing():
    assert rules.combine_detection_score(0.9, 0.8, 1.0, zero_below=0.5) == pytest.approx(0.925)
    assert rules.combine_detection_score(0.9, 0.8, 0.0, zero_below=0.5) == 0.0  # 0.425 < 0.5
    assert rules.combine_detection_score(1.0, 1.0, 0.0, zero_below=0.5) == 0.5  # not below
    assert rules.combine_detection_score(0.9, None, 0.0, zero_below=0.5) == 0.0
    assert rules.combine_detection_score(None, None, 0.0, zero_below=0.5) == 0.0
    # 3D: no zeroing
    assert rules.combine_detection_score(0.9, 0.8, 0.0, zero_below=None) == pytest.approx(0.425)
    assert rules.combine_detection_score(None, 0.8, 0.0, zero_below=None) == pytest.approx(0.2)


# --------------------------------------------------------------------------- 3D depth
def test_depth_relation_uses_iou_and_mean_inverse_depth():
    depth = np.zeros((100, 100), dtype=np.uint8)
    depth[0:50, :] = 200  # rows 0..49 near (transposed indexing: x in 0..49 is near)
    near, far = (0, 10, 40, 60), (50, 10, 90, 60)  # x ranges 0-40 (near) and 50-90 (far), no overlap
    assert rules.depth_position("in front of", near, far, depth) == 0.0  # IoU 0 -> 0
    heavy = ((0, 0, 49, 80), (10, 0, 59, 80))  # IoU 39/59 > 0.5
    assert rules.iou(*heavy) > 0.5
    assert rules.depth_position("in front of", *heavy, depth) == 1.0
    assert rules.depth_position("behind", *heavy, depth) == 0.0
    assert rules.depth_position("hidden", heavy[1], heavy[0], depth) == 1.0
    light = ((0, 0, 45, 80), (30, 0, 90, 80))
    overlap = rules.iou(*light)
    assert 0 < overlap < 0.5
    assert rules.depth_position("in front of", *light, depth) == pytest.approx(overlap / 0.5)
    assert rules.depth_position("next to", *light, depth) == 0.0


def test_depth_transposition_quirk_is_replicated_and_switchable():
    depth = np.zeros((100, 100), dtype=np.uint8)
    depth[:, 0:50] = 200  # columns 0..49 near: the true left half is near
    left, right = (0, 0, 55, 100), (45, 0, 100, 100)  # overlap 10 px, IoU 0.1
    assert rules.depth_position("in front of", left, right, depth, transposed=False) == pytest.approx(rules.iou(left, right) / 0.5)
    # the official depth[x1:x2, y1:y2] reads rows by x: both regions average the same -> 0
    assert rules.depth_position("in front of", left, right, depth, transposed=True) == 0.0


def test_depth_iou_exactly_half_and_empty_regions_score_zero():
    depth = np.arange(100 * 100, dtype=np.float64).reshape(100, 100)
    a, b = (0, 0, 30, 10), (10, 0, 40, 10)  # IoU = 20/40 = 0.5
    assert rules.iou(a, b) == 0.5
    assert rules.depth_position("in front of", b, a, depth) == 0.0
    assert np.isnan(rules.mean_depth(depth, (5, 5, 5, 9)))
    assert rules.depth_position("in front of", (5, 5, 5, 9), (0, 0, 10, 10), depth) == 0.0


# --------------------------------------------------------------------------- numeracy
OBJECTS = [("boy", "boys"), ("cup", "cups"), ("shrimp", "shrimp"), ("ice cream", "ice creams"), ("knife", "knives")]


@pytest.mark.parametrize(
    "prompt, expected",
    [
        ("two boys", [("boy", 2)]),
        ("one cup", [("cup", 1)]),
        ("an ice cream", [("ice cream", 1)]),
        ("three ice creams and a cup", [("ice cream", 3), ("cup", 1)]),
        ("seven shrimp", [("shrimp", 7)]),
        ("one pear and three knives", [("knife", 3)]),  # pear is not a known object
        ("Two boys", []),  # number words are case-sensitive in the official parser
        ("a cup and", [("cup", 1)]),
        ("boys and two", []),
    ],
)
def test_parse_numeracy(prompt, expected):
    assert rules.parse_numeracy(prompt, OBJECTS) == expected


def test_every_numeracy_prompt_parses():
    objects = rules.read_object_names(BENCH / "new_objects.txt")
    assert len(objects) >= 100 and ("person", "people") in objects
    for line in (BENCH / "numeracy_val.txt").read_text(encoding="utf-8").splitlines():
        assert rules.parse_numeracy(line.strip(), objects), line


def test_numeracy_dedup_rule():
    assert rules.is_duplicate((0, 0, 100, 100), (1, 1, 100, 100))  # IoU > 0.9
    assert rules.is_duplicate((0, 0, 100, 100), (10, 10, 60, 60))  # small box covered > 90 %
    assert not rules.is_duplicate((0, 0, 100, 100), (50, 0, 150, 100))
    # +1-pixel convention: 9x9 box inside a 10x10 one is covered 100 %, IoU 100/121... still duplicate
    assert rules.is_duplicate((0, 0, 9, 9), (0, 0, 10, 10))
    boxes = [(0, 0, 100, 100), (2, 2, 99, 99), (200, 0, 300, 100), (205, 5, 260, 60)]
    assert rules.deduplicate(boxes) == [(0, 0, 100, 100), (200, 0, 300, 100)]


def test_numeracy_score():
    targets = [("dog", 2), ("cat", 1)]
    assert rules.numeracy_score(targets, {"dog": 2, "cat": 1}) == 1.0
    assert rules.numeracy_score(targets, {"dog": 2, "cat": 3}) == 0.75
    assert rules.numeracy_score(targets, {"dog": 1}) == 0.25
    assert rules.numeracy_score(targets, {}) == 0.0
    with pytest.raises(ValueError):
        rules.numeracy_score([], {})


# --------------------------------------------------------------------------- complex 3-in-1
def test_three_in_one_combinations():
    assert rules.three_in_one("spatial", 0.8, 0.6, 0.3) == pytest.approx(0.7)
    assert rules.three_in_one("action", 0.8, 0.6, 0.3) == pytest.approx(0.55)
    assert rules.three_in_one("spatialaction", 0.8, 0.6, 0.3) == pytest.approx(1.7 / 3)


def test_complex_kind_matches_lowercase_text_before_first_period(data_dir):
    spatial, action = rules.read_complex_lists(data_dir)
    assert rules.complex_kind("The fluffy cat is on the left of the soft pillow.", spatial, action) == "spatial"
    assert rules.complex_kind("the red hat was on top of the brown coat rack", spatial, action) == "spatial"  # CRLF line
    assert rules.complex_kind("The black phone was resting on the brown charger. Extra.", spatial, action) == "action"
    assert rules.complex_kind("The bumpy sphere was nestled between a star and a heart.", spatial, action) == "spatialaction"


def test_missing_complex_lists_are_a_clear_error(tmp_path, checkpoints):
    with pytest.raises(FileNotFoundError, match="complex_val_spatial.txt"):
        rules.read_complex_lists(tmp_path)
    reward = make_reward(checkpoints, data_dir=tmp_path / "nowhere", category="complex")
    with pytest.raises(FileNotFoundError, match="T2I-CompBench data_dir .*complex.* not found: .*nowhere"):
        reward.evaluate(images(1), [Prompt("The fluffy cat is on the left of the soft pillow.", 0)])
    reward = make_reward(checkpoints, data_dir=tmp_path, category="numeracy")
    with pytest.raises(FileNotFoundError, match="new_objects.txt"):
        reward.evaluate(images(1), [Prompt("two dogs", 0)])



@pytest.mark.parametrize("data_dir", [None, "data/benchmarks/t2i_compbench"])
def test_complex_and_numeracy_read_the_bundled_official_files(checkpoints, tmp_path, monkeypatch, data_dir):
    monkeypatch.chdir(tmp_path)  # a relative data_dir is found next to the data package
    reward = make_reward(checkpoints, data_dir=data_dir, box_threshold=0.0)
    prompts = [
        Prompt("The red hat was on top of the brown coat rack.", 0, {"category": "complex"}),  # complex_val_spatial.txt
        Prompt("The black phone was resting on the brown charger.", 1, {"category": "complex"}),  # complex_val_action.txt
        Prompt("two boys", 2, {"category": "numeracy"}),  # "boy - boys" in new_objects.txt
    ]
    details = reward.evaluate(images(3), prompts).details
    assert [d.get("kind") for d in details] == ["spatial", "action", None]
    assert details[2]["targets"] == {"boy": 2}


# --------------------------------------------------------------------------- grounding wrapper
def test_grounding_caption_and_phrase_spans():
    caption, spans = grounding_caption(["dog", "teddy bear", "cat"])
    assert caption == "dog . teddy bear . cat."
    assert spans == [[(0, 3)], [(6, 11), (12, 16)], [(19, 22)]]
    assert [caption[a:b] for a, b in spans[1]] == ["teddy", "bear"]


def test_phrase_token_map_covers_each_phrase_tokens(checkpoints):
    tokenizer = BertTokenizerFast.from_pretrained(checkpoints["gdino"])
    caption, spans = grounding_caption(["dog", "teddy bear"])
    encoding = tokenizer([caption], return_tensors="pt")
    positive = phrase_token_map(encoding, 0, spans, 32)
    ids = encoding.input_ids[0].tolist()
    assert positive.shape == (2, 32)
    assert positive.sum(-1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert [ids[k] for k in positive[0].nonzero().flatten().tolist()] == tokenizer.convert_tokens_to_ids(["dog"])
    assert [ids[k] for k in positive[1].nonzero().flatten().tolist()] == tokenizer.convert_tokens_to_ids(["teddy", "bear"])


def test_detector_returns_sorted_thresholded_pixel_boxes(checkpoints):
    detector = GroundingDetector(str(checkpoints["gdino"]), box_threshold=0.2)
    found = detector.detect(images(2), [["dog", "cat"], ["bear"]])
    assert [sorted(f) for f in found] == [["cat", "dog"], ["bear"]]
    for detections in (d for f in found for d in f.values()):
        scores = [d.score for d in detections]
        assert scores == sorted(scores, reverse=True) and all(0.2 < s <= 1 for s in scores)
        assert all(-56 <= v <= 112 for d in detections for v in d.box)
    one_by_one = GroundingDetector(str(checkpoints["gdino"]), box_threshold=0.2, batch_size=1).detect(images(2), [["dog", "cat"], ["bear"]])
    assert [{k: [d.score for d in v] for k, v in f.items()} for f in one_by_one] == [
        {k: pytest.approx([d.score for d in v], abs=1e-5) for k, v in f.items()} for f in found
    ]
    assert GroundingDetector(str(checkpoints["gdino"]), box_threshold=1.0).detect(images(1), [["dog"]]) == [{"dog": []}]


# --------------------------------------------------------------------------- BLIP-VQA wiring
def test_blip_uses_enc_and_dec_tokens_and_is_batch_invariant(checkpoints):
    seen = {}
    vqa = BlipVqa(str(checkpoints["blip"]), image_size=48, batch_size=16)
    questions = [["a green bench?", "a blue bowl?"], ["a red dog on the left of a cat?"]]
    batched = vqa.yes_probabilities(images(2), questions)
    vqa.model.text_encoder.register_forward_hook(lambda m, args, kwargs, out: seen.update(enc=kwargs["input_ids"][:, 0].tolist()), with_kwargs=True)
    vqa.model.text_decoder.register_forward_hook(lambda m, args, kwargs, out: seen.update(dec=kwargs["input_ids"].tolist()), with_kwargs=True)
    vqa.batch_size = 1
    single = vqa.yes_probabilities(images(2), questions)
    assert seen == {"enc": [VOCAB_SIZE + 1], "dec": [[VOCAB_SIZE]]}  # [ENC] = last vocab id, [DEC] = bos
    assert [len(a) for a in batched] == [2, 1]
    assert np.allclose(sum(batched, []), sum(single, []), atol=1e-5)
    assert all(0 < p < 1 for p in sum(batched, []))


def test_attribute_category_is_product_of_question_probabilities(checkpoints):
    reward = make_reward(checkpoints, category="color")
    prompts = [Prompt("a green bench and a blue bowl", 0), Prompt("a red dog and a blue cat", 1)]
    out = score(reward, images(2), prompts)
    assert out.scores.shape == (2,)
    for s, detail in zip(out.scores.tolist(), out.details):
        assert list(detail["questions"]) in (["a green bench?", "a blue bowl?"], ["a red dog?", "a blue cat?"])
        assert s == pytest.approx(np.prod(list(detail["questions"].values())), rel=1e-5)
    assert reward.blip.model is not None and reward.detector.model is None  # only what the category needs


# --------------------------------------------------------------------------- categories end to end
ALL = [
    Prompt("a green bench and a blue bowl", 0, {"category": "color"}),
    Prompt("a dog next to a cat", 1, {"category": "spatial"}),
    Prompt("A dog is looking at a bowl.", 2, {"category": "non_spatial"}),
    Prompt("two dogs and a cat", 3, {"category": "numeracy"}),
    Prompt("a dog in front of a cat", 4, {"category": "3d_spatial"}),
    Prompt("The fluffy cat is on the left of the soft pillow.", 5, {"category": "complex"}),
    Prompt("The black phone was resting on the brown charger.", 6, {"category": "complex"}),
    Prompt("a blue dog and a red bowl", 7, {"category": "texture"}),
]


def test_auto_category_scores_every_category_in_range(checkpoints, data_dir):
    reward = make_reward(checkpoints, data_dir=data_dir, box_threshold=0.0)
    out = score(reward, images(len(ALL)), ALL)
    assert out.scores.shape == (len(ALL),)
    assert [d["category"] for d in out.details] == [p.metadata["category"] for p in ALL]
    spatial, numeracy, three_d, complex_spatial, complex_action = (out.details[i] for i in (1, 3, 4, 5, 6))
    assert spatial["spatial_objects"] == ["dog", "cat"] and spatial["spatial_relation"] == "next to"
    assert spatial["spatial"] == 0.0 or spatial["spatial"] >= 0.5
    assert numeracy["targets"] == {"dog": 2, "cat": 1} and all(1 <= n <= 10 for n in numeracy["counts"].values())
    assert three_d["3d_relation"] == "in front of" and 0 <= three_d["3d"] <= 1
    assert complex_spatial["kind"] == "spatial"
    assert out.scores[5] == pytest.approx((complex_spatial["attribute"] + complex_spatial["spatial"]) / 2, abs=1e-6)
    assert complex_action["kind"] == "action" and complex_action["clip_text"] == "The phone was resting on the charger ."
    assert out.scores[6] == pytest.approx((complex_action["attribute"] + complex_action["clip"]) / 2, abs=1e-6)


def test_batched_equals_one_by_one(checkpoints, data_dir):
    reward = make_reward(checkpoints, data_dir=data_dir, box_threshold=0.0)
    picks = [ALL[i] for i in (0, 1, 3, 4)]
    imgs = images(len(picks), seed=3)
    together = reward.evaluate(imgs, picks).scores
    alone = torch.cat([reward.evaluate([im], [p]).scores for im, p in zip(imgs, picks)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_fixed_category_overrides_metadata_and_auto_needs_it(checkpoints):
    reward = make_reward(checkpoints, category="non_spatial")
    out = reward.evaluate(images(1), [Prompt("a dog", 0, {"category": "color"})])
    assert out.details[0]["category"] == "non_spatial"
    with pytest.raises(ValueError, match="metadata\\['category'\\]"):
        make_reward(checkpoints).evaluate(images(1), [Prompt("a dog", 0)])
    with pytest.raises(ValueError, match="unknown T2I-CompBench category"):
        T2ICompBenchReward(category="colour")


def test_spatial_without_detections_scores_zero(checkpoints):
    reward = make_reward(checkpoints, category="spatial", box_threshold=1.0)
    out = reward.evaluate(images(1), [Prompt("a dog on the left of a cat", 0)])
    assert out.scores.tolist() == [0.0] and out.details[0]["spatial_boxes"] == [None, None]


def test_missing_weights_error_names_the_checkpoint(tmp_path):
    reward = T2ICompBenchReward(category="color")
    with pytest.raises(MissingCheckpointError, match="T2I-CompBench BLIP-VQA.*Salesforce/blip-vqa-capfilt-large"):
        reward.evaluate(images(1), [Prompt("a green bench", 0)])
    reward = T2ICompBenchReward(category="spatial", detector_model=str(tmp_path / "nowhere"))
    with pytest.raises(MissingCheckpointError, match="nowhere"):
        reward.evaluate(images(1), [Prompt("a dog next to a cat", 0)])


def test_registered_and_yaml_matches_constructor():
    config = yaml.safe_load(CONFIG.read_text())["model"]["reward"]
    module, name = config["class_path"].rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    reward = cls(**config["init_args"])
    assert isinstance(build("t2i_compbench"), cls)
    assert reward.blip.checkpoint == "Salesforce/blip-vqa-capfilt-large"
    assert reward.depth.checkpoint == "Intel/dpt-hybrid-midas"
    assert reward.detector.checkpoint == "IDEA-Research/grounding-dino-base"
    assert reward.clip.checkpoint == "openai/clip-vit-base-patch32"
