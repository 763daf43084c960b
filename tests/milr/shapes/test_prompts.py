"""Shapes prompts, scenes and plans: plans describe scenes exactly and only well-formed plans parse."""

from __future__ import annotations

import random

import pytest

from milr.shapes import prompts, world


@pytest.mark.parametrize("tag", prompts.TAGS)
def test_a_plan_parses_back_to_its_scene(tag):
    rng = random.Random(1)
    for _ in range(50):
        objects = prompts.scene(prompts.make_prompt(tag, rng), rng)
        assert sorted(prompts.parse_plan(prompts.plan_text(objects))) == sorted(objects)


def test_a_plan_lists_objects_in_reading_order_by_cell_name():
    objects = [world.Obj((0, 0), "red", "circle"), world.Obj((3, 2), "red", "circle"), world.Obj((1, 1), "blue", "cross")]
    assert prompts.plan_text(objects) == "red circle at a1. blue cross at b2. red circle at d3."


@pytest.mark.parametrize("text", [
    "",
    "red circle at a1",  # no full stop
    "red circles at a1.",  # not a shape
    "pink circle at a1.",  # not a palette colour
    "red circle at e1.",  # not a column
    "red circle at a5.",  # not a row
    "red circle at a1. blue square at a1.",  # two objects in one cell
    "red circle at a1. and more",
    "hello red circle at a1.",
])
def test_malformed_plans_do_not_parse(text):
    assert prompts.parse_plan(text) is None


def test_scenes_satisfy_their_prompt_and_counting_objects_share_a_colour():
    rng = random.Random(2)
    for _ in range(100):
        meta = prompts.make_prompt("counting", rng)
        objects = prompts.scene(meta, rng)
        assert len(objects) == meta["include"][0]["count"] and len({o.color for o in objects}) == 1
        meta = prompts.make_prompt("color_attr", rng)
        assert [(o.shape, o.color) for o in prompts.scene(meta, rng)] == [(r["class"], r["color"]) for r in meta["include"]]


def test_knowledge_prompts_name_the_object_indirectly_and_resolve_it_in_include():
    rng = random.Random(3)
    for _ in range(50):
        meta = prompts.make_prompt("knowledge", rng)
        clause = meta["include"][0]
        assert clause["class"] in world.SHAPES
        riddle_shape = prompts.SHAPE_RIDDLES[clause["class"]] in meta["prompt"]
        assert riddle_shape or "color" in clause
        if "color" in clause:
            assert clause["color"] not in meta["prompt"] and prompts.COLOR_RIDDLES[clause["color"]] in meta["prompt"]


def test_the_evaluation_set_is_fixed_by_its_seed():
    assert prompts.evaluation_set(5, seed=0) == prompts.evaluation_set(5, seed=0) != prompts.evaluation_set(5, seed=1)
    assert [m["tag"] for m in prompts.evaluation_set(2)] == [t for t in prompts.TAGS for _ in range(2)]
    with pytest.raises(ValueError, match="unknown Shapes tag"):
        prompts.make_prompt("texture", random.Random(0))
