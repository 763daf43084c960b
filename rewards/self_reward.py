"""Self reward: Janus-Pro judges its own image through its understanding path (docs/authors_code.md).

The judge is the backbone MILR is already optimising: ``setup(backbone=...)`` hands over the
``milr.backbone.JanusBackbone`` and the reward only keeps a reference to it, so no second copy
of the model (and no parameter of its own) ever exists.

The input is built as Janus' ``VLChatProcessor`` builds it (the authors' reward goes through it):
the DeepSeek chat format with Janus' default understanding system prompt, the user turn
``<image_placeholder>\\n{question}`` where the placeholder is expanded to
``<begin_of_image>`` + ``num_image_tokens`` × ``<image_placeholder>`` + ``<end_of_image>``
(transformers' ``JanusProcessor.replace_image_token``), and the image preprocessed by
``JanusImageProcessorPil`` with Janus-Pro's ``preprocessor_config.json`` values (square pad with
grey 127, bicubic resize to ``vision_config.image_size``, mean = std = 0.5).
``JanusForConditionalGeneration`` then scatters the SigLIP features of ``pixel_values`` into the
placeholder positions (``config.image_token_id``).

Modes:
- ``prob`` (default): one forward pass; score = P(yes) / (P(yes) + P(no)) of the first answer
  token after ``PROB_QUESTION``. P(yes) sums the probabilities of the first token of each
  spelling "yes", " yes", "Yes", " Yes" (``answer_token_ids``), likewise for "no".
- ``json``: the authors' prompt (``JSON_QUESTION``), greedy decoding of ``max_new_tokens`` (128
  in the reference) and their verdict: ``"Score": 0`` → 1.0, ``"Score": -1`` → 0.0. Unlike the
  reference, which maps unparseable answers to -1, an answer without a valid verdict raises
  ``VerdictError`` (a reward never makes a score up). No retry: greedy decoding is deterministic,
  so a retry would repeat the same answer; raise ``max_new_tokens`` if answers get truncated.
"""

from __future__ import annotations

import re
from typing import Literal

import torch
from PIL import Image
from transformers import DynamicCache
from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

from data.prompt import Prompt
from milr.prompts import chat
from rewards.base import Reward, RewardOutput, register

#: Janus' ``VLChatProcessor.system_prompt``, used by its understanding path (and the reference).
SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. "
    "You are able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language."
)

#: the ``prob`` mode question; ``{prompt}`` is the generation prompt.
PROB_QUESTION = 'Does this image match the prompt "{prompt}"? Answer yes or no.'

#: the authors' self-reward prompt, verbatim (including the missing space in "number.Then").
JSON_QUESTION = (
    'I\'ve generated this image based on the initial caption: "{prompt}".\n'
    "First, list all objects you see in the image along with their color, location and number."
    "Then compare them one-by-one with the caption requirements:\n"
    "- For each object in the caption, check its color matches and count matches.\n\n"
    "For the whole image, check if the spatial relationships match the caption.\n\n"
    "Please evaluate whether the image accurately reflects the caption in terms of:\n"
    "- object presence and count\n"
    "- spatial relationships (position)\n"
    "- colors and other fine-grained details\n\n"
    "If right, the score is 0, otherwise -1.\n"
    "Your response must follow this strict JSON format:\n"
    "{\n"
    '  "Thought": "<your detailed reasoning about the image vs. caption>",\n'
    '  "Score": 0 or -1,\n'
    '  "Reason": "<brief reason only if Score is -1; leave empty string if Score is 0>"\n'
    "}\n\n"
    "Examples:\n"
    "{\n"
    '  "Thought": "The image contains one dog as described, and all details match the caption.",\n'
    '  "Score": 0,\n'
    '  "Reason": ""\n'
    "}\n"
    "{\n"
    '  "Thought": "The image contains three dogs, which is more than the one dog described in the caption.",\n'
    '  "Score": -1,\n'
    '  "Reason": "The image contains three dogs instead of one dog."\n'
    "}"
)

#: Janus-Pro's image preprocessing (preprocessor_config.json of deepseek-community/Janus-Pro-{1B,7B})
IMAGE_MEAN = IMAGE_STD = (0.5, 0.5, 0.5)

_SCORE_FIELD = re.compile(r'"Score"\s*:\s*"?(-?\d+(?:\.\d+)?)"?')


class VerdictError(ValueError):
    """The judge's answer holds no valid ``"Score": 0 | -1`` verdict."""


def question(template: str, prompt: str) -> str:
    """``template`` with ``{prompt}`` filled (``str.format`` would trip over the JSON braces)."""
    return template.replace("{prompt}", prompt)


def parse_verdict(answer: str) -> float:
    """1.0 for ``"Score": 0`` (image matches), 0.0 for ``"Score": -1``.

    The ``"Score"`` field is read wherever it is (inside a code fence, or a JSON object cut by the
    token limit after the field); every occurrence must agree. Anything else raises ``VerdictError``.
    """
    values = {float(v) for v in _SCORE_FIELD.findall(answer)}
    if len(values) != 1 or not values <= {0.0, -1.0}:
        found = sorted(values) or "no Score field"
        raise VerdictError(f'self reward: expected one "Score": 0 or -1, got {found} in answer {answer[:300]!r}')
    return 1.0 if values == {0.0} else 0.0


def answer_token_ids(tokenizer, word: str) -> list[int]:
    """First token of each spelling of ``word`` an answer may start with (``word``, `` word``,
    ``Word``, `` Word``), keeping only tokens that begin the word: a bare-space token would be
    shared by "yes" and "no"."""
    ids = set()
    for variant in (word, " " + word, word.capitalize(), " " + word.capitalize()):
        first = tokenizer.encode(variant, add_special_tokens=False)[0]
        text = tokenizer.decode([first]).strip().lower()
        if text and word.startswith(text):
            ids.add(int(first))
    if not ids:
        raise ValueError(f"self reward: no token of the tokenizer starts the answer {word!r}")
    return sorted(ids)


def yes_probability(logits: torch.Tensor, yes_ids: list[int], no_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From next-token logits ``[B, V]``: (P(yes)/(P(yes)+P(no)), P(yes), P(no)), in fp32."""
    logp = logits.float().log_softmax(-1)
    log_yes = logp[:, yes_ids].logsumexp(-1)
    log_no = logp[:, no_ids].logsumexp(-1)
    return torch.sigmoid(log_yes - log_no), log_yes.exp(), log_no.exp()


@register("self_reward")
class SelfReward(Reward):
    """Janus-Pro's own yes/no (or JSON) judgement of its image; no extra GPU memory for weights."""

    def __init__(self, mode: Literal["prob", "json"] = "prob", max_new_tokens: int = 128, batch_size: int = 8) -> None:
        if mode not in ("prob", "json"):
            raise ValueError(f"mode must be 'prob' or 'json', got {mode!r}")
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be >= 1")
        self.mode = mode
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.backbone = None

    def setup(self, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, backbone=None) -> None:
        """Keep a reference to ``backbone`` (a ``JanusBackbone``); the judge runs on its device/dtype."""
        super().setup(device=device, dtype=dtype, backbone=backbone)
        self.backbone = backbone
        if backbone is None:
            return
        tok = backbone.tokenizer
        image_id = tok.convert_tokens_to_ids(tok.image_token)
        if image_id != backbone.model.config.image_token_id:
            raise ValueError(
                f"self reward: tokenizer's {tok.image_token} is id {image_id}, the model expects {backbone.model.config.image_token_id}"
            )
        self.yes_ids, self.no_ids = answer_token_ids(tok, "yes"), answer_token_ids(tok, "no")
        if set(self.yes_ids) & set(self.no_ids):
            raise ValueError(f"self reward: 'yes' {self.yes_ids} and 'no' {self.no_ids} answer tokens overlap")
        size = int(backbone.model.config.vision_config.image_size)
        self.image_processor = JanusImageProcessorPil(
            size={"height": size, "width": size}, image_mean=IMAGE_MEAN, image_std=IMAGE_STD
        )

    @property
    def model(self):
        """The backbone's ``JanusForConditionalGeneration`` (the very object, never a copy)."""
        self._require_backbone()
        return self.backbone.model

    def _require_backbone(self) -> None:
        if self.backbone is None:
            raise RuntimeError(
                "self reward: no Janus backbone; call setup(backbone=...) with the loaded JanusBackbone "
                "(the self reward judges with the generator's own weights)"
            )

    def _inputs(self, images: list[Image.Image], questions: list[str]) -> dict[str, torch.Tensor]:
        """Left-padded chat rows with the expanded image placeholder, and the pixel values."""
        bb, tok = self.backbone, self.backbone.tokenizer
        image_block = tok.boi_token + tok.image_token * bb.num_image_tokens + tok.eoi_token
        texts = [chat(f"{image_block}\n{q}", system=SYSTEM_PROMPT) for q in questions]
        enc = tok(texts, padding=True, padding_side="left", return_tensors="pt")
        pixels = self.image_processor([im.convert("RGB") for im in images], return_tensors="pt").pixel_values
        mask = enc.attention_mask.to(bb.device)
        return {
            "input_ids": enc.input_ids.to(bb.device),
            "attention_mask": mask,
            "position_ids": (mask.cumsum(-1) - 1).clamp(min=0),
            "pixel_values": pixels.to(bb.device, bb.dtype),
        }

    @torch.no_grad()
    def next_token_logits(self, images: list[Image.Image], questions: list[str]) -> torch.Tensor:
        """Logits ``[B, V]`` (fp32) of the first answer token."""
        return self.model(**self._inputs(images, questions), logits_to_keep=1).logits[:, -1].float()

    @torch.no_grad()
    def generate(self, images: list[Image.Image], questions: list[str]) -> list[str]:
        """Greedy answers (KV-cached, stops at EOS or ``max_new_tokens``), special tokens removed."""
        bb, model = self.backbone, self.model
        inputs = self._inputs(images, questions)
        mask, positions = inputs["attention_mask"], inputs["position_ids"][:, -1:]
        cache = DynamicCache()
        logits = model(**inputs, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        done = torch.zeros(len(images), dtype=torch.bool, device=bb.device)
        tokens = []
        for step in range(self.max_new_tokens):
            token = torch.where(done, torch.full_like(done, bb.pad_id, dtype=torch.long), logits.argmax(-1))
            tokens.append(token)
            done |= token == bb.eos_id
            if bool(done.all()) or step == self.max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions + 1
            logits = model(
                input_ids=token[:, None], attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
            ).logits[:, -1]
        answers = []
        for row in torch.stack(tokens, dim=1).tolist():
            row = row[: row.index(bb.eos_id)] if bb.eos_id in row else row
            answers.append(bb.tokenizer.decode(row, skip_special_tokens=True).strip())
        return answers

    def _score_batch(self, images: list[Image.Image], prompts: list[Prompt]) -> tuple[list[float], list[dict]]:
        if self.mode == "prob":
            logits = self.next_token_logits(images, [question(PROB_QUESTION, p.text) for p in prompts])
            score, p_yes, p_no = yes_probability(logits, self.yes_ids, self.no_ids)
            details = [{"p_yes": float(y), "p_no": float(n)} for y, n in zip(p_yes, p_no)]
            return score.cpu().tolist(), details
        answers = self.generate(images, [question(JSON_QUESTION, p.text) for p in prompts])
        return [parse_verdict(a) for a in answers], [{"answer": a} for a in answers]

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        self._require_backbone()
        scores, details = [], []
        for start in range(0, len(images), self.batch_size):
            stop = start + self.batch_size
            batch_scores, batch_details = self._score_batch(images[start:stop], prompts[start:stop])
            scores += batch_scores
            details += [{"mode": self.mode, **d} for d in batch_details]
        return RewardOutput(scores=torch.tensor(scores, dtype=torch.float32), details=details)
