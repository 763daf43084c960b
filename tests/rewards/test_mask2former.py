"""Mask2Former post-processing edge cases (the common cases are in test_geneval.py)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from rewards.mask2former import Mask2FormerDetector, instance_postprocess, resize_mask_logits
from tests.rewards.tiny_models import tiny_mask2former


def test_resizing_no_masks_gives_an_empty_stack_at_the_image_size():
    out = resize_mask_logits(torch.zeros(0, 8, 8), padded=(32, 32), valid=(30, 28), original=(60, 56))
    assert out.shape == (0, 60, 56)


def test_an_image_where_nothing_passes_the_score_floor_has_no_instances():
    class_logits = torch.zeros(4, 81)  # every pair has probability 1/81
    resize = lambda m: resize_mask_logits(m, padded=(32, 32), valid=(32, 32), original=(40, 40))  # noqa: E731
    inst = instance_postprocess(class_logits, torch.randn(4, 8, 8), to_image=resize, min_score=0.5)
    assert inst.labels.numel() == inst.scores.numel() == 0
    assert inst.boxes.shape == (0, 4) and inst.masks.shape == (0, 40, 40)


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Mask2FormerDetector:
    return Mask2FormerDetector(str(tiny_mask2former(tmp_path_factory.mktemp("m2f"))), shortest_edge=32, longest_edge=48)


def test_the_detector_returns_empty_instances_when_the_floor_is_above_every_score(detector):
    images = [Image.new("RGB", (40, 36), "white"), Image.new("RGB", (36, 40), "black")]
    for inst, image in zip(detector(images, min_score=0.999), images):
        assert inst.scores.numel() == 0 and inst.masks.shape == (0, image.height, image.width)
