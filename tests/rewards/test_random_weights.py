"""Random-weight reward checkpoints: real shapes are the published ones, tiny ones load and score."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import CLIPModel, Mask2FormerForUniversalSegmentation

from data.prompt import Prompt
from rewards.base import from_config, score
from rewards.geneval import GenEvalReward
from rewards.preference import HPSv2Reward, PickScoreReward
from rewards.random_weights import (
    CLIP_H14,
    CLIP_L14,
    QWEN_VL_SHAPES,
    SWIN_S,
    byte_clip_tokenizer,
    byte_qwen_tokenizer,
    clip_config,
    main,
    mask2former_config,
    qwen_vl_config,
)
from rewards.vlm_yes_no import VLMYesNoReward


def parameters_m(model_class: type, config) -> float:
    with torch.device("meta"):
        return sum(p.numel() for p in model_class(config).parameters()) / 1e6


def test_real_shapes_have_the_published_parameter_counts():
    clip = clip_config(CLIP_L14["text"], CLIP_L14["vision"], CLIP_L14["projection_dim"], byte_clip_tokenizer())
    assert round(parameters_m(CLIPModel, clip)) == 428  # openai/clip-vit-large-patch14: 427.6 M
    assert clip.text_config.vocab_size == 49408 and clip.vision_config.patch_size == 14
    detector = mask2former_config(SWIN_S, {})
    assert round(parameters_m(Mask2FormerForUniversalSegmentation, detector)) == 69  # Swin-S COCO instance: 68.7 M
    assert (detector.num_labels, detector.num_queries, detector.decoder_layers) == (80, 100, 10)


def test_tiny_geneval_checkpoints_load_through_the_written_config_and_score(tmp_path, capsys):
    config = main(["geneval", "--out", str(tmp_path / "rw"), "--size", "tiny"])
    assert capsys.readouterr().out.strip() == str(config)
    reward = from_config(config)
    assert isinstance(reward, GenEvalReward)
    assert reward.detector_name == str((tmp_path / "rw" / "mask2former").resolve())
    reward.setup(device="cpu", dtype=torch.float32)
    meta = {"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"}
    images = [Image.new("RGB", (64, 64), c) for c in ("white", "black")]
    out = score(reward, images, [Prompt("a photo of a dog", i, meta) for i in range(2)])
    assert set(out.scores.tolist()) <= {0.0, 1.0} and len(out.details) == 2


def test_real_judge_shapes_have_the_published_parameter_counts():
    vit_h = clip_config(CLIP_H14["text"], CLIP_H14["vision"], CLIP_H14["projection_dim"], byte_clip_tokenizer())
    assert round(parameters_m(CLIPModel, vit_h)) == 986  # laion/CLIP-ViT-H-14 = PickScore_v1 = HPSv2: 986.1 M
    for model_type, published in (("qwen2_5_vl", 8292), ("qwen3_vl", 8767)):  # Qwen2.5-VL-7B: 8.29 B, Qwen3-VL-8B: 8.77 B
        shapes = QWEN_VL_SHAPES[model_type]["real"]
        assert round(parameters_m(shapes.model_class, qwen_vl_config(shapes, byte_qwen_tokenizer()))) == published


@pytest.mark.parametrize("writer, reward_class", [
    ("pickscore", PickScoreReward), ("hpsv2", HPSv2Reward), ("vlm_yes_no", VLMYesNoReward), ("vlm_yes_no_qwen3", VLMYesNoReward),
])  # fmt: skip
def test_tiny_judge_checkpoints_load_through_the_written_config_and_score(tmp_path, writer, reward_class):
    config = main([writer, "--out", str(tmp_path), "--size", "tiny"])
    reward = from_config(config)
    assert type(reward) is reward_class and "RANDOM weights at tiny shapes" in config.read_text()
    reward.setup(device="cpu", dtype=torch.float32)
    out = score(reward, [Image.new("RGB", (40, 40), c) for c in ("white", "black")], [Prompt("a photo of a dog", i) for i in range(2)])
    assert out.scores.shape == (2,) and len(out.details) == 2
