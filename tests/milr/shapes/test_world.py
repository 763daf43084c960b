"""The Shapes world is pixel-exact: rendering, the patch codes and their codebook agree."""

from __future__ import annotations

import random

import numpy as np
import pytest

from milr.shapes import prompts, world


def test_rendering_equals_painting_the_scene_tokens_through_the_exact_codebook():
    rng = random.Random(0)
    for tag in prompts.TAGS:
        for _ in range(10):
            objects = prompts.scene(prompts.make_prompt(tag, rng), rng)
            assert np.array_equal(world.render(objects), world.paint(world.tokens(objects)))


def test_every_shape_code_paints_a_distinct_patch_and_background_codes_paint_white_at_their_position():
    book = world.codebook().reshape(world.CODES, -1)
    assert (book[: world.BACKGROUND_CODES] == 255).all()
    shapes = book[world.BACKGROUND_CODES :]
    assert len({row.tobytes() for row in shapes}) == len(shapes) == 96 and not (shapes == 255).all(-1).any()
    grid = world.tokens([world.Obj((3, 0), "red", "cross")])
    assert grid[0, 0] == 0 and grid[7, 7] == 63 and grid[1, 5] == 13  # background: its own position
    assert grid[0, 6] == world.code("red", "cross", 0) and grid[1, 7] == world.code("red", "cross", 3)


def test_shapes_follow_the_spec():
    masks = world.MASKS
    assert masks["square"].sum() == 144
    assert masks["cross"].sum() == 2 * 4 * 12 - 16  # two 4 × 12 bars sharing a 4 × 4 centre
    triangle = masks["triangle"]
    assert triangle[-1].all() and triangle[:2].sum() <= 4 and (triangle == triangle[:, ::-1]).all()  # base, apex, symmetric
    assert masks["circle"][6, 0] and not masks["circle"][0, 0]
    image = world.render([world.Obj((1, 2), "blue", "square")])
    assert tuple(image[2 * 16 + 2, 16 + 2]) == world.PALETTE["blue"]
    assert tuple(image[2 * 16 + 1, 16 + 2]) == world.BACKGROUND  # the 2 px margin


def test_bad_scenes_are_refused():
    with pytest.raises(ValueError, match="share a cell"):
        world.render([world.Obj((0, 0), "red", "circle"), world.Obj((0, 0), "blue", "square")])
    with pytest.raises(ValueError, match="outside"):
        world.Obj((4, 0), "red", "circle")
    with pytest.raises(ValueError, match="unknown object"):
        world.Obj((0, 0), "pink", "circle")
    with pytest.raises(ValueError, match="codes must lie"):
        world.paint(np.full((8, 8), world.CODES))
