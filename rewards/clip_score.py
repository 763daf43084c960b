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

Not T2I-CompBench's CLIPScore (raw cosine of ViT-B/32, docs/evaluators.md): that one is part
of the T2I-CompBench reward.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from PIL import Image
from transformers import CLIPModel, CLIPTokenizer
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from data.prompt import Prompt
from rewards.base import Reward, RewardOutput, register
from rewards.hub import LazyModel, load_pretrained

DEFAULT_CHECKPOINT = "openai/clip-vit-large-patch14"


def cosine(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine of ``[B, D]`` features, in fp32."""
    return (F.normalize(image_features.float(), dim=-1) * F.normalize(text_features.float(), dim=-1)).sum(-1)


def clip_score(image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Row-wise ``max(cos, 0)`` of ``[B, D]`` features, in fp32 (torchmetrics' CLIPScore / 100)."""
    return cosine(image_features, text_features).clamp(min=0.0)


def clip_tokenizer(name_or_path: str) -> CLIPTokenizer:
    """``CLIPTokenizer.from_pretrained``, failing on a folder without a vocabulary: transformers 5
    silently builds a tokenizer of only the special tokens there, which would score every prompt alike."""
    tokenizer = CLIPTokenizer.from_pretrained(name_or_path)
    if len(tokenizer.get_vocab()) <= len(set(tokenizer.all_special_tokens)):
        raise OSError(f"no tokenizer vocabulary (vocab.json + merges.txt or tokenizer.json) in {name_or_path!r}")
    return tokenizer


class CLIPPairs(LazyModel):
    """A ``CLIPModel`` with a tokenizer and a (PIL, torchvision-free) image processor, loaded once;
    scores image-prompt pairs by the cosine of their embeddings, ``batch_size`` pairs per forward pass.

    ``processor``: where the tokenizer and image processor come from when the checkpoint does not
    ship them (PickScore uses the processor of the CLIP it was fine-tuned from); None: the checkpoint.
    """

    def __init__(self, checkpoint: str, batch_size: int, *, processor: Optional[str] = None, what: str) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        super().__init__(checkpoint, batch_size)
        self.processor = processor or checkpoint
        self.what = what

    def _load(self) -> None:
        self.model = load_pretrained(CLIPModel.from_pretrained, self.checkpoint, what=self.what, dtype=self.dtype)
        self.model.requires_grad_(False)
        self.tokenizer = load_pretrained(clip_tokenizer, self.processor, what=f"{self.what} tokenizer")
        self.image_processor = load_pretrained(CLIPImageProcessorPil.from_pretrained, self.processor, what=f"{self.what} image processor")

    @property
    def max_length(self) -> int:
        return self.model.config.text_config.max_position_embeddings

    @torch.no_grad()
    def _features(self, images: list[Image.Image], texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.image_processor([im.convert("RGB") for im in images], return_tensors="pt").pixel_values
        tokens = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        image = self.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)).pooler_output
        text = self.model.get_text_features(
            input_ids=tokens.input_ids.to(self.device), attention_mask=tokens.attention_mask.to(self.device)
        ).pooler_output
        return image, text

    def cosines(self, images: list[Image.Image], texts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        """fp32 cosine ``[B]`` (on the CPU) of each image with its text, and whether each text was
        truncated to the text encoder's positions (first 75 tokens between the start and end tokens)."""
        self.load()
        step = self.batch_size
        cos = torch.cat([cosine(*self._features(images[i : i + step], texts[i : i + step])).cpu() for i in range(0, len(images), step)])
        # tokenised up to one token past the limit: longer means the prompt was truncated
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length + 1).input_ids]
        return cos, [n > self.max_length for n in lengths]


class CLIPSimilarityReward(Reward):
    """A reward that is a function of the CLIP cosine of image and prompt (``score``)."""

    #: names the model in errors
    what: str = "CLIP reward"

    def __init__(self, checkpoint: str, batch_size: int, processor: Optional[str] = None) -> None:
        self.checkpoint = checkpoint
        self.clip = CLIPPairs(checkpoint, batch_size, processor=processor, what=self.what)

    def setup(self, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, backbone: Any = None) -> None:
        super().setup(device=device, dtype=dtype, backbone=backbone)
        self.clip.to(self.device, self.dtype)

    def score(self, cos: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, float]]]:
        """Scores in [0, 1] from the cosines ``[B]``, and each image's details."""
        raise NotImplementedError

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        cos, truncated = self.clip.cosines(images, [p.text for p in prompts])
        scores, details = self.score(cos)
        return RewardOutput(scores=scores, details=[{**d, "truncated": t} for d, t in zip(details, truncated)])


@register("clip_score")
class CLIPScoreReward(CLIPSimilarityReward):
    """Image-prompt CLIP similarity; ViT-L/14 needs ~0.9 GB in bf16, ~1.7 GB in fp32."""

    what = "CLIPScore reward"

    def __init__(self, checkpoint: str = DEFAULT_CHECKPOINT, batch_size: int = 32) -> None:
        super().__init__(checkpoint, batch_size)

    def score(self, cos: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, float]]]:
        scores = cos.clamp(min=0.0)
        return scores, [{"clip_score": round(100.0 * float(s), 4)} for s in scores]
