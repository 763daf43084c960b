"""PickScore and HPSv2 on a tiny random CLIPModel saved to disk and loaded back through ``checkpoint``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from data.prompt import Prompt
from rewards import build
from rewards.base import from_config, score
from rewards.hub import MissingCheckpointError
from rewards.preference import VIT_H14, HPSv2Reward, PickScoreReward, unit_interval
from tests.rewards.tiny_models import tiny_clip

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "rewards"
PROMPTS = [Prompt("a red apple", 0), Prompt("two dogs on a sofa", 1), Prompt("a blue cup", 2)]
REWARDS = {"pickscore": PickScoreReward, "hpsv2": HPSv2Reward}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_clip(tmp_path_factory.mktemp("tiny_preference_clip"))


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)) for _ in range(n)]


def reward(name: str, checkpoint: Path, **kwargs) -> PickScoreReward | HPSv2Reward:
    r = REWARDS[name](checkpoint=str(checkpoint), processor=None, **kwargs)
    r.setup(device="cpu", dtype=torch.float32)
    return r


def reference_cosines(checkpoint: Path) -> tuple[torch.Tensor, float]:
    """The authors' recipe (PickScore's model card): processor, get_*_features, unit norm, dot."""
    model, processor = CLIPModel.from_pretrained(checkpoint).eval(), CLIPProcessor.from_pretrained(checkpoint)
    with torch.no_grad():
        image = model.get_image_features(**processor(images=images(3), return_tensors="pt")).pooler_output
        text = model.get_text_features(**processor(text=[p.text for p in PROMPTS], padding=True, return_tensors="pt")).pooler_output
    image, text = image / image.norm(dim=-1, keepdim=True), text / text.norm(dim=-1, keepdim=True)
    return (image * text).sum(-1), float(model.logit_scale.exp())


def test_unit_interval_is_increasing_and_bounded():
    cos = torch.tensor([-1.0, -0.3, 0.0, 0.27, 1.0])
    assert torch.allclose(unit_interval(cos), torch.tensor([0.0, 0.35, 0.5, 0.635, 1.0]))


def test_defaults_registry_and_yaml():
    for name, cls in REWARDS.items():
        built, configured = build(name), from_config(CONFIGS / f"{name}.yaml")
        assert type(built) is type(configured) is cls
        assert built.clip.processor == configured.clip.processor == VIT_H14
        assert built.checkpoint == configured.checkpoint
    assert build("pickscore").checkpoint == "yuvalkirstain/PickScore_v1" and build("hpsv2").checkpoint == "adams-story/HPSv2-hf"


def test_pickscore_is_the_authors_score_mapped_to_the_unit_interval(checkpoint):
    cos, scale = reference_cosines(checkpoint)
    out = score(reward("pickscore", checkpoint), images(3), PROMPTS)
    assert torch.allclose(out.scores, (cos + 1) / 2, atol=1e-5)
    raw = torch.tensor([d["pickscore"] for d in out.details])
    assert torch.allclose(raw, scale * cos, atol=1e-3) and scale != pytest.approx(1.0)
    assert torch.equal(raw.argsort(), out.scores.argsort())  # the mapping keeps the authors' ranking


def test_hps_is_the_cosine_mapped_to_the_unit_interval(checkpoint):
    cos, _ = reference_cosines(checkpoint)
    out = score(reward("hpsv2", checkpoint), images(3), PROMPTS)
    assert torch.allclose(out.scores, (cos + 1) / 2, atol=1e-5)
    assert [d["hps"] for d in out.details] == pytest.approx(cos.tolist(), abs=1e-5)
    assert [d["truncated"] for d in out.details] == [False] * 3


@pytest.mark.parametrize("name", REWARDS)
def test_batch_of_three_equals_three_batches_of_one_and_repeats(checkpoint, name):
    batched = reward(name, checkpoint, batch_size=3)
    together = batched.evaluate(images(3), PROMPTS).scores
    alone = torch.cat([reward(name, checkpoint, batch_size=1).evaluate([im], [p]).scores for im, p in zip(images(3), PROMPTS)])
    assert torch.allclose(together, alone, atol=1e-6)
    assert torch.equal(together, batched.evaluate(images(3), PROMPTS).scores)


def test_processor_comes_from_its_own_checkpoint(checkpoint, tmp_path):
    """PickScore's checkpoint ships no processor: the weights load from one place, tokenizer and
    image processor from ``processor``; without it the error names the weights-only folder."""
    weights = tmp_path / "weights-only"
    weights.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(checkpoint / f, weights / f)
    split = PickScoreReward(checkpoint=str(weights), processor=str(checkpoint))
    split.setup(device="cpu")
    assert torch.equal(split.evaluate(images(3), PROMPTS).scores, reward("pickscore", checkpoint).evaluate(images(3), PROMPTS).scores)
    with pytest.raises(MissingCheckpointError, match="weights-only") as err:
        PickScoreReward(checkpoint=str(weights), processor=None).evaluate(images(1), PROMPTS[:1])
    assert "PickScore reward tokenizer" in str(err.value)


@pytest.mark.parametrize("name, what, missing", [("pickscore", "PickScore reward", "yuvalkirstain/PickScore_v1"),
                                                 ("hpsv2", "HPSv2 reward", "adams-story/HPSv2-hf")])
def test_missing_checkpoint_is_one_line_with_the_download_command(name, what, missing):
    r = build(name)  # lazy: nothing loads before the first call
    with pytest.raises(MissingCheckpointError) as err:
        r.evaluate(images(1), PROMPTS[:1])
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{what}: could not load checkpoint {missing!r}")
    assert f"`hf download {missing}`" in message
