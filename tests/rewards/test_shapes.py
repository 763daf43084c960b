"""The exact Shapes detector: rendered scenes are read perfectly, each GenEval rule broken on
purpose is caught, imperfect images get the documented reading, and a run folder is scored."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import rewards
from data.formats import load_prompts
from data.prompt import Prompt
from milr.results import report
from milr.shapes import prompts, world
from milr.shapes.world import Obj
from rewards import shapes
from rewards.base import score
from rewards.geneval_rules import relative_position
from tests.run_folders import FakePrompt, Step, fake_run


def judge(meta: dict, objects: list[Obj]) -> shapes.Verdict:
    return shapes.verdict(meta, shapes.read(world.render(objects)))


def test_rendered_scenes_of_every_tag_are_read_exactly_and_satisfy_their_prompt():
    rng = random.Random(0)
    for tag in prompts.TAGS:
        for _ in range(60):
            meta = prompts.make_prompt(tag, rng)
            objects = prompts.scene(meta, rng)
            seen = shapes.read(world.render(objects))
            assert {s.obj for s in seen} == set(objects) and all(s.score == 1.0 for s in seen), meta
            assert shapes.verdict(meta, seen).correct, (meta, objects)


def test_every_prompt_of_the_shipped_set_has_a_scene_the_detector_finds_correct():
    rng = random.Random(0)
    for prompt in load_prompts("data/benchmarks/shapes_geneval/evaluation_metadata.jsonl"):
        assert judge(prompt.metadata, prompts.scene(prompt.metadata, rng)).correct, prompt.metadata


def test_the_scene_construction_of_relations_holds_under_the_exact_rule_for_every_cell_pair_and_shape():
    """``prompts._relation_holds`` must imply GenEval's ``relative_position`` on the boxes the detector reads."""
    boxes = {s: shapes.read(world.render([Obj((0, 0), "red", s)]))[0].box for s in world.SHAPES}
    cells = [(c, r) for r in range(world.GRID) for c in range(world.GRID)]

    def box(shape, cell):
        x1, y1, x2, y2 = boxes[shape]
        dx, dy = cell[0] * world.CELL, cell[1] * world.CELL
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)

    checked = 0
    for relation in prompts.RELATIONS:
        for a in cells:
            for b in cells:
                if a != b and prompts._relation_holds(a, b, relation):
                    for sa in world.SHAPES:
                        for sb in world.SHAPES:
                            assert relation in relative_position(box(sa, a), box(sb, b)), (relation, a, b, sa, sb)
                            checked += 1
    assert checked > 1000


def meta_of(tag: str, **fields) -> dict:
    """A prompt of ``tag`` whose fields (``include`` etc.) are replaced by ``fields``."""
    return {**prompts.make_prompt(tag, random.Random(0)), **fields}


def test_each_rule_broken_on_purpose_is_caught_with_geneval_reasons():
    counting = meta_of("counting", include=[{"class": "circle", "count": 3}], exclude=[{"class": "circle", "count": 4}])
    three = [Obj((c, 0), "red", "circle") for c in range(3)]
    assert judge(counting, three).correct
    too_few = judge(counting, three[:2])
    assert not too_few.correct and too_few.reasons == ("expected circle>=3, found 2",)
    extra = judge(counting, three + [Obj((0, 3), "blue", "circle")])
    assert not extra.correct and extra.reasons == ("expected circle<4, found 4",)
    assert judge(counting, three + [Obj((0, 3), "blue", "square")]).correct  # another class is no extra circle

    colors = meta_of("colors", include=[{"class": "square", "count": 1, "color": "green"}])
    assert judge(colors, [Obj((1, 1), "green", "square")]).correct
    wrong = judge(colors, [Obj((1, 1), "yellow", "square")])
    assert wrong.reasons == ("expected green square>=1, found 0 green; and 1 yellow",)

    position = meta_of("position", include=[{"class": "cross", "count": 1}, {"class": "triangle", "count": 1, "position": ["left of", 0]}])
    scene = [Obj((2, 1), "red", "cross"), Obj((0, 1), "blue", "triangle")]
    assert judge(position, scene).correct
    swapped = judge(position, [Obj((0, 1), "red", "cross"), Obj((2, 1), "blue", "triangle")])
    assert swapped.reasons == ("expected triangle left of target, found right of target",)

    two = meta_of("two_object", include=[{"class": "circle", "count": 1}, {"class": "cross", "count": 1}])
    assert judge(two, [Obj((0, 0), "red", "circle"), Obj((3, 3), "red", "cross")]).correct
    assert judge(two, [Obj((0, 0), "red", "circle")]).reasons == ("expected cross>=1, found 0",)

    single = meta_of("single_object", include=[{"class": "triangle", "count": 1}])
    assert judge(single, [Obj((2, 2), "purple", "square")]).reasons == ("expected triangle>=1, found 0",)

    attr = meta_of("color_attr", include=[{"class": "circle", "count": 1, "color": "red"}, {"class": "square", "count": 1, "color": "blue"}])
    assert not judge(attr, [Obj((0, 0), "blue", "circle"), Obj((1, 0), "red", "square")]).correct  # colours bound the wrong way


def reward_scores(reward, metas: list[dict], scenes: list[list[Obj]]) -> list[float]:
    images = [Image.fromarray(world.render(s)) for s in scenes]
    return score(reward, images, [Prompt(m["prompt"], i, m) for i, m in enumerate(metas)]).scores.tolist()


def test_the_reward_is_binary_by_default_and_the_clause_fraction_when_soft():
    two = meta_of("two_object", include=[{"class": "circle", "count": 1}, {"class": "cross", "count": 1}])
    counting = meta_of("counting", include=[{"class": "square", "count": 2}], exclude=[{"class": "square", "count": 3}])
    attr = meta_of("color_attr", include=[{"class": "circle", "count": 1, "color": "red"}, {"class": "square", "count": 1, "color": "blue"}])
    metas = [two, counting, attr, two]
    scenes = [
        [Obj((0, 0), "red", "circle")],  # one of two objects
        [Obj((c, 2), "green", "square") for c in range(3)],  # include holds, exclude fails
        [Obj((0, 0), "red", "circle"), Obj((1, 0), "green", "square")],  # one colour right
        [Obj((0, 0), "red", "circle"), Obj((3, 0), "red", "cross")],  # correct
    ]
    assert reward_scores(rewards.build("shapes_geneval"), metas, scenes) == [0.0, 0.0, 0.0, 1.0]
    assert reward_scores(rewards.build("shapes_geneval", soft=True), metas, scenes) == [0.5, 0.5, 0.5, 1.0]


def test_details_list_the_objects_and_the_verdict_and_survive_json():
    meta = meta_of("colors", include=[{"class": "square", "count": 1, "color": "green"}])
    image = Image.fromarray(world.render([Obj((1, 2), "yellow", "square")]))
    out = score(shapes.ShapesGenEvalReward(), [image], [Prompt(meta["prompt"], 0, meta)])
    detail = json.loads(json.dumps(out.details[0]))
    assert detail["correct"] is False and "found 0 green" in detail["reason"] and detail["fraction"] == 0.0
    assert detail["objects"] == [{"cell": [1, 2], "color": "yellow", "shape": "square", "box": [18, 34, 29, 45], "score": 1.0, "pixels": 144}]
    assert detail["seen"] == [[1, 2, "yellow", "square"]]


def test_light_noise_does_not_change_the_reading():
    rng = random.Random(3)
    noise = np.random.default_rng(0)
    for tag in prompts.TAGS:
        for _ in range(10):
            meta = prompts.make_prompt(tag, rng)
            objects = prompts.scene(meta, rng)
            image = world.render(objects).astype(np.int16) + noise.normal(0, 8, (64, 64, 3)).round().astype(np.int16)
            ys, xs = noise.integers(0, 64, (2, 12))  # and 12 stray pixels of random palette colours
            image[ys, xs] = [world.PALETTE[world.COLORS[i]] for i in noise.integers(0, 6, 12)]
            seen = shapes.read(np.clip(image, 0, 255).astype(np.uint8))
            assert {s.obj for s in seen} == set(objects) and shapes.verdict(meta, seen).correct, (meta, seen)


def test_imperfect_images_get_the_documented_reading():
    circle = world.tokens([Obj((0, 0), "red", "circle")])
    # a shape drawn one token to the right straddles cells 0 and 1: one object, in the cell of its box centre
    straddling = shapes.read(world.paint(np.roll(circle, 1, axis=1)))
    assert [(s.obj, s.score) for s in straddling] == [(Obj((0, 0), "red", "circle"), 1.0)]
    # a cell painted in two colours is one object of the majority colour (ties: palette order), at a lowered score
    two_colours = circle.copy()
    two_colours[1, :2] = [world.code("blue", "circle", q) for q in (2, 3)]
    (seen,) = shapes.read(world.paint(two_colours))
    assert seen.obj == Obj((0, 0), "red", "circle") and seen.score == pytest.approx(0.5)
    assert shapes.detect(world.paint(two_colours)) == [seen.obj]  # seen (> 0.3), though too unsure for counting (> 0.9)
    # a shape with one or two of its quadrant tokens is a fragment, not an object; with three of a
    # square, circle or cross it is that shape (a triangle needs its base)
    for shape in world.SHAPES:
        full = world.tokens([Obj((1, 1), "red", shape)])
        for kept in [k for n in (1, 2, 3) for k in itertools.combinations([(2, 2), (2, 3), (3, 2), (3, 3)], n)]:
            partial = np.zeros_like(full)
            partial[tuple(zip(*kept))] = full[tuple(zip(*kept))]
            whole = len(kept) == 3 and (shape != "triangle" or {(3, 2), (3, 3)} <= set(kept))
            assert shapes.detect(world.paint(partial)) == ([Obj((1, 1), "red", shape)] if whole else []), (shape, kept)
    # a speck under MIN_PIXELS is nothing
    speck = world.render([])
    speck[30:32, 30:33] = world.PALETTE["green"]
    assert shapes.read(speck) == []


def test_images_are_downscaled_from_multiples_of_64_and_other_sizes_refused():
    objects = [Obj((0, 0), "red", "circle"), Obj((3, 2), "blue", "cross")]
    big = Image.fromarray(world.render(objects)).resize((256, 256), Image.Resampling.NEAREST)
    assert set(shapes.detect(big)) == set(objects)
    for size in [(100, 100), (64, 128), (32, 32)]:
        with pytest.raises(ValueError, match="64 × 64"):
            shapes.detect(Image.new("RGB", size, "white"))


def test_prompts_need_geneval_metadata_with_shapes_classes():
    reward = shapes.ShapesGenEvalReward()
    image = Image.fromarray(world.render([]))
    with pytest.raises(ValueError, match="tag, include"):
        reward.evaluate([image], [Prompt("a photo of a circle", 0)])
    with pytest.raises(ValueError, match="not Shapes shapes"):
        reward.evaluate([image], [Prompt("a cat", 0, {"tag": "single_object", "include": [{"class": "cat", "count": 1}]})])


def test_importing_the_reward_imports_no_lightning():
    code = "import sys, rewards.shapes; sys.exit('lightning' in sys.modules or 'milr.module' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_plan_accuracy_and_agreement_read_the_think_text():
    meta = meta_of("counting", include=[{"class": "square", "count": 2}], exclude=[{"class": "square", "count": 3}])
    two = [Obj((0, 0), "red", "square"), Obj((2, 1), "red", "square")]
    assert shapes.plan_correct(meta, prompts.plan_text(two))
    assert not shapes.plan_correct(meta, prompts.plan_text(two[:1])) and not shapes.plan_correct(meta, "two red squares")
    seen = [[0, 0, "red", "square"], [2, 1, "red", "square"]]
    assert shapes.plan_agrees(seen, prompts.plan_text(two[::-1])) and not shapes.plan_agrees(seen[:1], prompts.plan_text(two))


def test_a_run_folder_is_scored_per_tag_and_measure_and_the_report_reads_it(tmp_path, capsys):
    rng = random.Random(5)
    single = prompts.make_prompt("single_object", rng)
    counting = meta_of("counting", include=[{"class": "circle", "count": 2}], exclude=[{"class": "circle", "count": 3}])
    knowledge = prompts.make_prompt("knowledge", rng)
    other = next(s for s in world.SHAPES if s != single["include"][0]["class"])
    wrong_single = [Obj((1, 1), "red", other)]
    right_single = prompts.scene(single, rng)
    two_circles = [Obj((0, 0), "blue", "circle"), Obj((2, 2), "blue", "circle")]
    three_circles = two_circles + [Obj((3, 3), "blue", "circle")]
    right_knowledge = prompts.scene(knowledge, rng)
    plan = prompts.plan_text
    # per prompt: (initial scene, initial text), (selected scene, selected text)
    cases = {
        "00000": (single, (wrong_single, plan(wrong_single)), (right_single, plan(right_single))),
        "00001": (counting, (two_circles, "::::"), (three_circles, plan(two_circles))),
        "00002": (knowledge, (right_knowledge, plan(right_knowledge)), (right_knowledge, plan(right_knowledge))),
    }
    fakes = [FakePrompt(key, meta, [[Step(0.0, text=init[1]), Step(1.0, text=sel[1])]]) for key, (meta, init, sel) in cases.items()]
    run = fake_run(tmp_path / "run", fakes)
    for key, (_, init, sel) in cases.items():
        Image.fromarray(world.render(init[0])).save(run / key / "initial" / "0000.png")
        Image.fromarray(world.render(sel[0])).resize((128, 128), Image.Resampling.NEAREST).save(run / key / "samples" / "0000.png")

    official = shapes.main([str(run)])
    written = json.loads((run / "official" / "shapes_geneval.json").read_text())
    assert written["groups"] == {"single_object": {"score": 1.0, "n": 1}, "counting": {"score": 0.0, "n": 1}, "knowledge": {"score": 1.0, "n": 1}}
    assert written["overall"] == official.overall == 0.5  # GenEval tags only: knowledge apart
    extra = written["extra"]
    assert extra["initial"]["groups"]["single_object"]["score"] == 0.0 and extra["initial"]["groups"]["counting"]["score"] == 1.0
    assert extra["plan"]["geneval_mean"] == 1.0 and extra["initial plan"]["geneval_mean"] == 0.0
    assert extra["agreement"]["groups"]["counting"]["score"] == 0.0 and extra["initial agreement"]["groups"]["counting"]["score"] == 0.0
    assert extra["initial agreement"]["groups"]["single_object"]["score"] == 1.0
    assert not list((run / "official").glob(".*.tmp"))
    out = capsys.readouterr().out
    assert "GenEval mean (six GenEval tags): 0.500; knowledge (apart): 1.000" in out
    assert report.load(run).official_score("shapes_geneval", "00001", 0) == 0.0
