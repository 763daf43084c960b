"""CLIPScore reward on a tiny random CLIP saved to disk and loaded back through ``checkpoint``."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from transformers import CLIPModel, CLIPProcessor, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from data.prompt import Prompt
from rewards.base import build, score
from rewards.clip_score import DEFAULT_CHECKPOINT, CLIPScoreReward, clip_score
from rewards.hub import MissingCheckpointError
from tests.rewards.tiny_models import tiny_clip

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "rewards" / "clip_score.yaml"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised CLIPModel (77 text positions, 30 px images) in hub layout."""
    return tiny_clip(tmp_path_factory.mktemp("tiny_clip"), image_size=30, patch_size=15)


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)) for _ in range(n)]


PROMPTS = [Prompt("a red apple", 0), Prompt("two dogs on a sofa", 1), Prompt("a blue cup", 2), Prompt("a green bird", 3)]


def reward(checkpoint: Path, dtype: torch.dtype = torch.float32, **kwargs) -> CLIPScoreReward:
    r = CLIPScoreReward(checkpoint=str(checkpoint), **kwargs)
    r.setup(device="cpu", dtype=dtype)
    return r


def test_formula_is_clamped_cosine():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0], [4.0, 3.0]])
    assert torch.allclose(clip_score(a, b), torch.tensor([1.0, 0.0, 0.0, 24.0 / 25.0]))
    assert clip_score(a.bfloat16(), b.bfloat16()).dtype == torch.float32


def test_registered_default_checkpoint_and_yaml():
    r = build("clip_score")
    assert isinstance(r, CLIPScoreReward) and r.checkpoint == DEFAULT_CHECKPOINT == "openai/clip-vit-large-patch14"
    spec = yaml.safe_load(CONFIG.read_text())["model"]["reward"]
    module, name = spec["class_path"].rsplit(".", 1)
    built = getattr(importlib.import_module(module), name)(**spec["init_args"])
    assert isinstance(built, CLIPScoreReward) and built.checkpoint == DEFAULT_CHECKPOINT


def test_missing_checkpoint_names_it(tmp_path):
    missing = str(tmp_path / "no-clip-here")
    r = CLIPScoreReward(checkpoint=missing)  # construction is lazy: no error yet
    r.setup(device="cpu")
    with pytest.raises(MissingCheckpointError, match="no-clip-here") as err:
        r.evaluate(images(1), PROMPTS[:1])
    assert "CLIPScore reward" in str(err.value) and "checkpoint option" in str(err.value)


def test_scores_shape_range_details_and_single_load(checkpoint):
    r = reward(checkpoint)
    out = score(r, images(4), PROMPTS)  # validates shape [B], finite, inside [0, 1]
    assert out.scores.shape == (4,) and (out.scores > 0).any(), "random CLIP should give some positive cosines"
    assert [d["truncated"] for d in out.details] == [False] * 4
    assert [d["clip_score"] for d in out.details] == pytest.approx((100 * out.scores).tolist(), abs=1e-3)
    model = r.clip.model
    r.evaluate(images(1), PROMPTS[:1])
    assert r.clip.model is model


def test_batched_equals_one_by_one(checkpoint):
    batched = reward(checkpoint, batch_size=3).evaluate(images(4), PROMPTS).scores
    single = torch.cat([reward(checkpoint, batch_size=1).evaluate([im], [p]).scores for im, p in zip(images(4), PROMPTS)])
    assert torch.allclose(batched, single, atol=1e-5)


class TensorFeatures(torch.nn.Module):
    """What torchmetrics 1.9 expects from the model: ``get_*_features`` returning tensors."""

    def __init__(self, clip: CLIPModel) -> None:
        super().__init__()
        self.clip, self.config = clip, clip.config

    def get_image_features(self, pixel_values):
        return self.clip.get_image_features(pixel_values=pixel_values).pooler_output

    def get_text_features(self, input_ids, attention_mask):
        return self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output


def torchmetrics_pair(checkpoint: Path, model) -> tuple:
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessorPil.from_pretrained(checkpoint), tokenizer=CLIPTokenizer.from_pretrained(checkpoint)
    )
    return model, processor


def test_equals_torchmetrics_clipscore_over_100(checkpoint):
    from torchmetrics.multimodal import CLIPScore

    clip = CLIPModel.from_pretrained(checkpoint).eval()
    metric = CLIPScore(model_name_or_path=lambda: torchmetrics_pair(checkpoint, TensorFeatures(clip)))
    ours = reward(checkpoint).evaluate(images(4), PROMPTS).scores
    for image, prompt, value in zip(images(4), PROMPTS, ours):
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
        with torch.no_grad():
            reference = float(metric(pixels, prompt.text)) / 100
        assert value.item() == pytest.approx(reference, abs=1e-5)


def test_torchmetrics_cannot_take_a_transformers5_clip_directly(checkpoint):
    """Why the reward computes the formula itself; if this starts passing, torchmetrics can be used."""
    from torchmetrics.multimodal import CLIPScore

    metric = CLIPScore(model_name_or_path=lambda: torchmetrics_pair(checkpoint, CLIPModel.from_pretrained(checkpoint)))
    with pytest.raises(AttributeError, match="norm"):
        metric(torch.from_numpy(np.array(images(1)[0])).permute(2, 0, 1), "a red apple")


def test_long_prompts_keep_their_first_75_tokens(checkpoint):
    r = reward(checkpoint)
    letters = "abcdefghijklmnopqrstuvwxy"
    head = " ".join(letters[i % 25] for i in range(75))  # one token per one-letter word: 75 + start + end = 77
    long_a, long_b = Prompt(head + " on a table", 0), Prompt(head + " under the sky", 1)
    out = r.evaluate(images(1) * 3, [long_a, long_b, Prompt(head, 2)])
    assert [d["truncated"] for d in out.details] == [True, True, False]
    assert out.scores[0] == out.scores[1] == out.scores[2]
    texts = [long_a.text, long_b.text, head, head.rsplit(" ", 1)[0]]
    _, text = r.clip._features(images(1) * 4, texts)
    # truncation keeps the end token CLIP pools: truncated prompts embed exactly like their first 75 tokens
    assert torch.allclose(text[0], text[2], atol=1e-6) and torch.allclose(text[1], text[2], atol=1e-6)
    assert not torch.allclose(text[2], text[3], atol=1e-4)


def test_bf16_dtype(checkpoint):
    r = reward(checkpoint, dtype=torch.bfloat16)
    out = score(r, images(4), PROMPTS)
    assert r.clip.model.dtype == torch.bfloat16
    assert torch.allclose(out.scores, reward(checkpoint).evaluate(images(4), PROMPTS).scores, atol=0.05)
