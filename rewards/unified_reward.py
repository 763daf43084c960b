"""UnifiedReward: a Qwen2.5-VL reward model (CodeGoat24/UnifiedReward-qwen-7b) scoring 1-5.

Follows the MILR authors' wrapper (docs/authors_code.md): one user turn holding the image then
UnifiedReward's point-score instruction, greedy generation (512 new tokens), and the number
after the first parseable "Final Score:" line. The authors return ``raw - 5``; here the
score is ``clip((raw - 1) / 4, 0, 1)`` (their MixedReward mapping), so 5 -> 1 and 1 -> 0.
"""

from __future__ import annotations

from typing import Optional

import torch
from PIL import Image

from data.prompt import Prompt
from rewards.base import Reward, RewardOutput, register
from rewards.judges import QwenVLJudge, conversation

#: UnifiedReward's pointwise image-generation instruction, ``{prompt}`` = the caption
PROMPT_TEMPLATE = (
    "You are given a text caption and a generated image based on that caption. "
    "Your task is to evaluate this image based on two key criteria:\n"
    "1. Alignment with the Caption: Assess how well this image aligns with the provided caption. "
    "Consider the accuracy of depicted objects, their relationships, and attributes as described in the caption.\n"
    "2. Overall Image Quality: Examine the visual quality of this image, including clarity, detail preservation, "
    "color accuracy, and overall aesthetic appeal.\n"
    "Extract key elements from the provided text caption, evaluate their presence in the generated image using "
    "the format: 'element (type): value' (where value=0 means not generated, and value=1 means generated), "
    "and assign a score from 1 to 5 after 'Final Score:'.\n"
    "Your task is provided as follows:\n"
    "Text Caption: [{prompt}]"
)


def parse_final_score(answer: str) -> float:
    """The number after "Final Score:" on the first line where one parses (as the authors' loop).

    Markdown emphasis around the number (``**4**``) is tolerated; no number is a ``ValueError``.
    """
    for line in answer.splitlines():
        if "Final Score:" in line:
            try:
                return float(line.split("Final Score:", 1)[1].strip().strip("*").strip())
            except ValueError:
                continue
    raise ValueError(f"no 'Final Score: <number>' line in answer {answer[:200]!r}")


def normalize_score(raw: float) -> float:
    """1..5 -> [0, 1] as ``(raw - 1) / 4``, clipped."""
    return min(max((raw - 1.0) / 4.0, 0.0), 1.0)


@register("unified_reward")
class UnifiedReward(Reward):
    """Caption alignment + image quality judged by UnifiedReward-qwen-7b (~16 GB in bf16)."""

    def __init__(
        self,
        model_name_or_path: str = "CodeGoat24/UnifiedReward-qwen-7b",
        max_new_tokens: int = 512,
        batch_size: int = 4,
        cache_dir: Optional[str] = None,
    ) -> None:
        self.judge = QwenVLJudge(
            model_name_or_path,
            what="UnifiedReward judge",
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            cache_dir=cache_dir,
        )

    def setup(self, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, backbone=None) -> None:
        super().setup(device=device, dtype=dtype, backbone=backbone)
        self.judge.place(self.device, self.dtype)

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        conversations = [conversation(image, PROMPT_TEMPLATE.format(prompt=p.text)) for image, p in zip(images, prompts)]
        verdicts = self.judge.ask(conversations, parse_final_score)
        scores = [normalize_score(raw) for raw, _ in verdicts]
        details = [{"raw_score": raw, "score": s, "answer": answer} for (raw, answer), s in zip(verdicts, scores)]
        return RewardOutput(scores=torch.tensor(scores, dtype=torch.float32), details=details)
