"""CLIPScore as torchmetrics defines it, mapped to [0, 1]: ``max(cos(E_image, E_text), 0)``.

torchmetrics' ``CLIPScore`` is ``max(100 · cos, 0)``; this reward returns that value / 100.
The default checkpoint is torchmetrics' default, ``openai/clip-vit-large-patch14`` (ViT-L/14,
224 px, 77 text tokens). Prompts longer than the text encoder's 77 positions are truncated
to their first 75 tokens between the start and end tokens (what OpenAI's
``clip.tokenize(truncate=True)`` does); ``details[i]["truncated"]`` says when that happened.

Why not call ``torchmetrics.multimodal.CLIPScore`` (1.9) directly: with transformers 5,
``CLIPModel.get_{image,text}_features`` return a ``BaseModelOutputWithPooling`` instead of a
tensor and torchmetrics fails on it (``AttributeError: ... has no attribute 'norm'``); its
public API only returns the batch mean, not one score per image; and it truncates long
captions by slicing ``input_ids[:, :77]``, which drops the end token whose hidden state CLIP
pools. The formula is therefore computed here with transformers' ``CLIPModel``; the tests
check it against torchmetrics' own value through a tensor-returning adapter.

Not T2I-CompBench's CLIPScore (raw cosine of ViT-B/32, EVALUATORS.md §2e): that one is part
of the T2I-CompBench reward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image
from transformers import CLIPModel, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from data.prompt import Prompt
from rewards.base import Reward, RewardOutput, register
from rewards.hub import load_pretrained

DEFAULT_CHECKPOINT = "openai/clip-vit-large-patch14"


def clip_score(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Row-wise ``max(cos, 0)`` of ``[B, D]`` features, in fp32 (torchmetrics' CLIPScore / 100)."""
    image = F.normalize(image_features.float(), dim=-1)
    text = F.normalize(text_features.float(), dim=-1)
    return (image * text).sum(-1).clamp(min=0.0)


@register("clip_score")
class CLIPScoreReward(Reward):
    """Image-prompt CLIP similarity; ViT-L/14 needs ~0.9 GB in bf16, ~1.7 GB in fp32."""

    def __init__(self, checkpoint: str = DEFAULT_CHECKPOINT, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self._model: CLIPModel | None = None

    def _load(self) -> CLIPModel:
        """Model, tokenizer and (PIL, torchvision-free) image processor of ``checkpoint``, once."""
        if self._model is None:
            what = "CLIPScore reward"
            model = load_pretrained(CLIPModel.from_pretrained, self.checkpoint, what=what, dtype=self.dtype)
            self._tokenizer = load_pretrained(CLIPTokenizer.from_pretrained, self.checkpoint, what=what)
            self._image_processor = load_pretrained(CLIPImageProcessorPil.from_pretrained, self.checkpoint, what=what)
            self._model = model.to(self.device).eval().requires_grad_(False)
        return self._model

    @torch.no_grad()
    def _features(self, model: CLIPModel, images: list[Image.Image], texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        max_length = model.config.text_config.max_position_embeddings
        pixels = self._image_processor([im.convert("RGB") for im in images], return_tensors="pt").pixel_values
        tokens = self._tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        image = model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)).pooler_output
        text = model.get_text_features(
            input_ids=tokens.input_ids.to(self.device), attention_mask=tokens.attention_mask.to(self.device)
        ).pooler_output
        return image, text

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        model = self._load()
        texts = [p.text for p in prompts]
        batches = range(0, len(images), self.batch_size)
        scores = torch.cat(
            [clip_score(*self._features(model, images[i : i + self.batch_size], texts[i : i + self.batch_size])).cpu() for i in batches]
        )
        max_length = model.config.text_config.max_position_embeddings
        # tokenised up to one token past the limit: longer means the prompt was truncated
        lengths = [len(ids) for ids in self._tokenizer(texts, truncation=True, max_length=max_length + 1).input_ids]
        details = [{"clip_score": round(100.0 * float(s), 4), "truncated": n > max_length} for s, n in zip(scores, lengths)]
        return RewardOutput(scores=scores, details=details)
