"""Open-vocabulary detection with Grounding DINO, scored per query phrase.

Stands in for T2I-CompBench's UniDet (a closed 722-class detector, not in transformers) and
is the detector of the MILR mixed reward (their GroundingDINO SwinT-OGC wrapper). Default
checkpoint ``IDEA-Research/grounding-dino-base`` (``GroundingDinoForObjectDetection``).

Phrase scoring follows the MILR wrapper's "given-phrase mode": the caption is the phrases
joined as ``"cat . teddy bear."``; each phrase owns the tokens of its first and last word
(GroundingDINO's ``create_positive_map_from_span``), its score for a query is the mean
sigmoid logit over those tokens, and every query scoring ``> box_threshold`` is a detection
of that phrase (a query may detect several phrases). Images are resized shortest side 800 /
longest 1333 with ImageNet mean/std by the checkpoint's image processor, as in GroundingDINO.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from transformers import AutoTokenizer, GroundingDinoForObjectDetection
from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

from rewards.hub import LazyModel, load_pretrained

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One query's box for one phrase: score in [0, 1], box ``(x1, y1, x2, y2)`` in pixels."""

    score: float
    box: Box


def grounding_caption(phrases: list[str]) -> tuple[str, list[list[tuple[int, int]]]]:
    """``"a . b c."`` and, per phrase, the character spans of its first and last word."""
    spans, pointer = [], 0
    for phrase in phrases:
        words = phrase.strip().split(" ")
        if len(words) == 1:
            spans.append([(pointer, pointer + len(words[0]))])
        else:
            end = pointer + len(phrase)
            spans.append([(pointer, pointer + len(words[0])), (end - len(words[-1]), end)])
        pointer += len(phrase) + 3  # " . "
    return " . ".join(phrases) + ".", spans


def phrase_token_map(encoding, batch_index: int, spans: list[list[tuple[int, int]]], width: int) -> torch.Tensor:
    """``[P, width]`` rows of 1 over each phrase's tokens, normalised to sum 1 (GroundingDINO's
    ``create_positive_map_from_span``, including its off-by-one/two character fallbacks)."""
    positive = torch.zeros(len(spans), width)
    for j, phrase_spans in enumerate(spans):
        for begin, end in phrase_spans:
            first = _char_to_token(encoding, batch_index, [begin, begin + 1, begin + 2])
            last = _char_to_token(encoding, batch_index, [end - 1, end - 2, end - 3])
            if first is not None and last is not None and first < width:
                positive[j, first : min(last, width - 1) + 1] = 1.0
    return positive / (positive.sum(-1, keepdim=True) + 1e-6)


def _char_to_token(encoding, batch_index: int, candidates: list[int]):
    for char in candidates:
        if char >= 0:
            token = encoding.char_to_token(batch_index, char)
            if token is not None:
                return token
    return None


class GroundingDetector(LazyModel):
    """Lazily loaded Grounding DINO returning, per image, ``{phrase: [Detection, ...]}``
    sorted by score (highest first)."""

    def __init__(
        self,
        checkpoint: str = "IDEA-Research/grounding-dino-base",
        box_threshold: float = 0.3,
        batch_size: int = 8,
        what: str = "Grounding DINO detector",
    ) -> None:
        super().__init__(checkpoint, batch_size)
        self.box_threshold = box_threshold
        self.what = what

    def _load(self) -> None:
        self.model = load_pretrained(GroundingDinoForObjectDetection.from_pretrained, self.checkpoint, what=self.what)
        self.processor = load_pretrained(GroundingDinoImageProcessorPil.from_pretrained, self.checkpoint, what=self.what)
        self.tokenizer = load_pretrained(AutoTokenizer.from_pretrained, self.checkpoint, what=self.what)

    def detect(self, images: list[Image.Image], phrases: list[list[str]]) -> list[dict[str, list[Detection]]]:
        """Detect ``phrases[i]`` in ``images[i]``, ``batch_size`` images per forward."""
        self.load()
        step = self.batch_size
        return [found for i in range(0, len(images), step) for found in self._detect(images[i : i + step], phrases[i : i + step])]

    @torch.no_grad()
    def _detect(self, images: list[Image.Image], phrases: list[list[str]]) -> list[dict[str, list[Detection]]]:
        phrases = [list(dict.fromkeys(p)) for p in phrases]
        captions, spans = zip(*(grounding_caption(p) for p in phrases))
        images = [im.convert("RGB") for im in images]
        vision = self.processor(images, return_tensors="pt")
        text = self.tokenizer(list(captions), padding="longest", return_tensors="pt")
        outputs = self.model(
            pixel_values=vision.pixel_values.to(device=self.device, dtype=self.dtype),
            pixel_mask=vision.pixel_mask.to(self.device) if "pixel_mask" in vision else None,
            input_ids=text.input_ids.to(self.device),
            attention_mask=text.attention_mask.to(self.device),
            token_type_ids=text.token_type_ids.to(self.device) if "token_type_ids" in text else None,
        )
        probs = outputs.logits.float().sigmoid().cpu()  # [B, queries, max_text_len]
        boxes = outputs.pred_boxes.float().cpu()  # [B, queries, 4] normalised cx, cy, w, h
        results = []
        for i, image in enumerate(images):
            width, height = image.size
            phrase_scores = probs[i] @ phrase_token_map(text, i, spans[i], probs.shape[-1]).T  # [queries, P]
            cx, cy, w, h = boxes[i].unbind(-1)
            xyxy = torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], -1)
            found = {}
            for j, phrase in enumerate(phrases[i]):
                keep = torch.nonzero(phrase_scores[:, j] > self.box_threshold).flatten()
                keep = keep[phrase_scores[keep, j].argsort(descending=True)]
                found[phrase] = [Detection(float(phrase_scores[q, j]), tuple(float(v) for v in xyxy[q])) for q in keep]
            results.append(found)
        return results
