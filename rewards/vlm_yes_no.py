"""A yes/no VLM judge, VQAScore-style: the probability that a local Qwen2.5-VL or Qwen3-VL answers
"Yes" to a question about the image, read from one forward pass (no free-text generation).

Questions (``questions`` option):
- ``prompt``: the whole prompt, ``Does this image show: {prompt}?``;
- ``include``: for GenEval-schema prompts (``metadata["include"]``), one question per include
  clause, asking for its object with its count, colour and position at once, e.g. "Is there a red
  bench in the image?", "Are there exactly three cats in the image?", "Is there a dog to the right
  of a teddy bear in the image?"; the score is the product of the answers, so every clause must
  hold (GenEval's all-or-nothing rule, softened to probabilities). ``exclude`` clauses are not
  asked: "exactly" already excludes more. A GenEval-like judgement from a model that shares no
  code or weights with GenEval's detector;
- ``auto`` (default): ``include`` when the prompt has include clauses, else ``prompt``.

Every question ends with VQAScore's ``Please answer yes or no.`` and is asked in a chat user turn
holding the image first (the model's chat template, default system turn, generation prompt).
P("Yes") is the next-token probability summed over the first tokens of "Yes", "yes", " Yes" and
" yes" (``rewards.self_reward.answer_token_ids``): not renormalised against "No", as VQAScore.
Each (image, question) pair is one row of a batch of ``batch_size`` rows, so a prompt with three
clauses costs three rows; rows are left-padded and a score does not depend on its batch.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

import torch
from PIL import Image

from data.prompt import Prompt
from rewards.base import Reward, RewardOutput, register
from rewards.judges import QwenVLJudge, conversation
from rewards.self_reward import answer_token_ids

Mode = Literal["auto", "prompt", "include"]
PROMPT_QUESTION = "Does this image show: {prompt}?"
#: VQAScore's answer instruction, after every question
ANSWER_FORMAT = " Please answer yes or no."
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
#: GenEval's relations, as a question says them
RELATIONS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
#: plurals of GenEval (COCO) class names that do not just add "s" / "es"
IRREGULAR_PLURALS = {"person": "people", "mouse": "mice", "knife": "knives", "sheep": "sheep", "skis": "skis", "scissors": "scissors"}


def plural(noun: str) -> str:
    """English plural of a class name (its last word inflected): bench → benches, wine glass → wine glasses."""
    head, _, last = noun.rpartition(" ")
    if last in IRREGULAR_PLURALS:
        word = IRREGULAR_PLURALS[last]
    elif last.endswith(("s", "x", "ch", "sh")):
        word = last + "es"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def with_article(phrase: str) -> str:
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def described(item: dict[str, Any]) -> str:
    """An include clause's object with its colour, e.g. "red bench"."""
    return f"{item['color']} {item['class']}" if item.get("color") else item["class"]


def clause_question(item: dict[str, Any], include: list[dict[str, Any]]) -> str:
    """One question asking for a clause's object, count, colour and position."""
    count = int(item.get("count", 1))
    if count == 1:
        subject = f"Is there {with_article(described(item))}"
    else:
        number = NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else str(count)
        subject = f"Are there exactly {number} {plural(described(item))}"
    if "position" in item:
        relation, other = item["position"]
        subject += f" {RELATIONS.get(relation, relation)} {with_article(described(include[other]))}"
    return f"{subject} in the image?"


def questions_for(prompt: Prompt, mode: Mode) -> list[str]:
    """The questions asked about ``prompt``'s image (without ``ANSWER_FORMAT``)."""
    include = prompt.metadata.get("include")
    if mode == "include" and not include:
        raise ValueError(f"prompt {prompt.index}: questions 'include' needs GenEval-style metadata['include'], this prompt has none")
    if include and mode != "prompt":
        return [clause_question(item, include) for item in include]
    return [PROMPT_QUESTION.format(prompt=prompt.text.strip().rstrip("."))]


@register("vlm_yes_no")
class VLMYesNoReward(Reward):
    """P("Yes") of a local Qwen VL judge (7-8B: ~17 GB of weights in bf16), one forward pass per question."""

    def __init__(
        self,
        model_name_or_path: str = "Qwen/Qwen2.5-VL-7B-Instruct",
        questions: Mode = "auto",
        batch_size: int = 8,
    ) -> None:
        if questions not in ("auto", "prompt", "include"):
            raise ValueError(f"questions must be 'auto', 'prompt' or 'include', got {questions!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.questions = questions
        self.judge = QwenVLJudge(model_name_or_path, what="yes/no VLM judge", batch_size=batch_size)
        self._yes_ids: Optional[list[int]] = None

    def setup(self, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, backbone: Any = None) -> None:
        super().setup(device=device, dtype=dtype, backbone=backbone)
        self.judge.place(self.device, self.dtype)

    def p_yes(self, images: list[Image.Image], questions: list[str]) -> list[float]:
        """P("Yes") of each (image, question) pair, batched."""
        if self._yes_ids is None:
            self._yes_ids = answer_token_ids(self.judge.tokenizer, "yes")
        logits = self.judge.next_token_logits([conversation(im, q + ANSWER_FORMAT) for im, q in zip(images, questions)])
        return logits.softmax(-1)[:, self._yes_ids].sum(-1).tolist()

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        asked = [questions_for(p, self.questions) for p in prompts]
        pairs = [(image, q) for image, qs in zip(images, asked) for q in qs]
        answers = iter(self.p_yes([im for im, _ in pairs], [q for _, q in pairs]))
        p_yes = [[next(answers) for _ in qs] for qs in asked]
        scores = torch.tensor([torch.tensor(ps, dtype=torch.float64).prod().item() for ps in p_yes], dtype=torch.float32)
        return RewardOutput(scores=scores, details=[{"questions": qs, "p_yes": ps} for qs, ps in zip(asked, p_yes)])
