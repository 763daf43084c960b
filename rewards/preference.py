"""Human-preference judges that are CLIP models: PickScore and HPSv2, as rewards or monitors.

Both are fine-tuned OpenCLIP ViT-H/14 (``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``: 224 px, 77 text
tokens) and score a pair by the cosine ``cos`` of its image and prompt embeddings, as their
authors do; they differ in weights and in the scale of the number they publish:

- **PickScore** (``yuvalkirstain/PickScore_v1``, a transformers ``CLIPModel`` with the processor
  of the laion CLIP it was tuned from): the authors' score is ``logit_scale.exp() · cos``
  (≈ 100 · cos; typical values 18–23), in ``details["pickscore"]``.
- **HPSv2** (any HPS checkpoint in transformers ``CLIPModel`` format): the authors' score is
  ``cos`` itself (``hpsv2.score``; typical values 0.2–0.35), in ``details["hps"]``.

Both are mapped to [0, 1] as ``(cos + 1) / 2``: an increasing affine map of the authors' score for
a given checkpoint (their score is ``cos`` times a positive constant), so it ranks images exactly
as theirs does, it is bounded without clipping, and it never saturates. The scale is compressed:
PickScore 21 → 0.605, HPS 0.27 → 0.635, so a ``reward_threshold`` is best set from the raw
values in ``details`` (``t = (raw / scale + 1) / 2``).

Which HPS versions load here: HPSv2.0 and HPSv2.1 are OpenCLIP ViT-H/14 state dicts
(``xswu/HPSv2``: ``HPS_v2_compressed.pt``, ``HPS_v2.1_compressed.pt``), so either loads once it is
converted to ``CLIPModel`` format. The default is the community conversion
``adams-story/HPSv2-hf`` (its card says "HPSv2" without a minor version, i.e. ``HPS_v2.pt``, the
only file when it was made; its author checked the embeddings against OpenCLIP's); a local
conversion of ``HPS_v2.1_compressed.pt`` loads the same way through ``checkpoint``. The ``.pt`` files themselves
need the ``hpsv2`` package (OpenCLIP), HPSv3 is a Qwen2-VL with its own head (package ``hpsv3``),
and ImageReward is BLIP with an MLP head (package ``image-reward``); none of them is a dependency
of milr (see the README's rewards section).
"""

from __future__ import annotations

from typing import Optional

import torch

from rewards.base import register
from rewards.clip_score import CLIPSimilarityReward

#: the OpenCLIP ViT-H/14 that PickScore and HPSv2 were fine-tuned from: its tokenizer and preprocessing
VIT_H14 = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


def unit_interval(cos: torch.Tensor) -> torch.Tensor:
    """``(cos + 1) / 2``: [-1, 1] onto [0, 1], increasing (keeps every ranking)."""
    return (cos.float() + 1.0) / 2.0


@register("pickscore")
class PickScoreReward(CLIPSimilarityReward):
    """PickScore (Pick-a-Pic human preferences), ViT-H/14: ~2.0 GB of weights in bf16."""

    what = "PickScore reward"

    def __init__(self, checkpoint: str = "yuvalkirstain/PickScore_v1", processor: Optional[str] = VIT_H14, batch_size: int = 16) -> None:
        super().__init__(checkpoint, batch_size, processor)

    def score(self, cos: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, float]]]:
        scale = float(self.clip.model.logit_scale.exp())
        return unit_interval(cos), [{"pickscore": round(scale * float(c), 4)} for c in cos]


@register("hpsv2")
class HPSv2Reward(CLIPSimilarityReward):
    """Human Preference Score v2 (HPD v2 human preferences), ViT-H/14: ~2.0 GB of weights in bf16."""

    what = "HPSv2 reward"

    def __init__(self, checkpoint: str = "adams-story/HPSv2-hf", processor: Optional[str] = VIT_H14, batch_size: int = 16) -> None:
        super().__init__(checkpoint, batch_size, processor)

    def score(self, cos: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, float]]]:
        return unit_interval(cos), [{"hps": round(float(c), 6)} for c in cos]
