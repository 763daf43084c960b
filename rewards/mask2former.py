"""Mask2Former COCO instance segmentation, run and post-processed the way mmdet 2.x does at test time.

GenEval's detector is mmdet's Mask2Former (Swin-S); transformers has the same architecture but
its ``post_process_instance_segmentation`` differs (fixed 384x384 mask resize, overlapping
instances painted into one map, threshold 0.5, no boxes). So we keep only the raw query logits
and apply mmdet's ``MaskFormerFusionHead.instance_postprocess`` ourselves (docs/evaluators.md):
softmax over the 81 logits, drop no-object, top-100 (query, class) pairs, binary mask = mask
logit > 0 at original resolution, score = class prob x mean sigmoid inside the mask, box = the
mask's tight box (``mask2bbox``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from rewards.hub import load_pretrained


@dataclass
class Instances:
    """Instances of one image, highest score first: labels ``[K]``, scores ``[K]``, boxes ``[K, 4]``, masks ``[K, H, W]``."""

    labels: torch.Tensor
    scores: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor


def top_pairs(class_logits: torch.Tensor, max_per_image: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``max_per_image`` best (query, class) pairs of ``[Q, C + 1]`` logits (last = no-object).

    Returns query indices, class labels and class probabilities, highest probability first.
    """
    probs = class_logits.float().softmax(-1)[:, :-1]
    num_classes = probs.shape[1]
    scores, flat = probs.flatten().topk(min(max_per_image, probs.numel()))
    return flat // num_classes, flat % num_classes, scores


def mask_scores(mask_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary masks (logit > 0) and mmdet's mask score: mean sigmoid over the mask's pixels."""
    binary = mask_logits > 0
    mean_inside = (mask_logits.float().sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    return binary, mean_inside


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """mmdet ``mask2bbox``: ``[x_min, y_min, x_max + 1, y_max + 1]`` per mask; an empty mask gives zeros."""
    num, height, width = masks.shape
    cols, rows = masks.any(1), masks.any(2)
    first_col, first_row = cols.int().argmax(1), rows.int().argmax(1)
    last_col = width - cols.flip(1).int().argmax(1)
    last_row = height - rows.flip(1).int().argmax(1)
    boxes = torch.stack([first_col, first_row, last_col, last_row], 1).float()
    return boxes * cols.any(1, keepdim=True)


def instance_postprocess(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    *,
    to_image: Callable[[torch.Tensor], torch.Tensor] = lambda m: m,
    max_per_image: int = 100,
    min_score: Optional[float] = None,
) -> Instances:
    """mmdet's instance post-processing of one image's ``[Q, C + 1]`` class and ``[Q, h, w]`` mask logits.

    ``to_image`` maps mask logits to original image resolution (identity if they already are).
    With ``min_score`` set, pairs whose score is not above it are dropped; since a mask score is
    at most 1, pairs with class probability ``<= min_score`` go before their masks are resized.
    """
    queries, labels, class_probs = top_pairs(class_logits, max_per_image)
    if min_score is not None:
        keep = class_probs > min_score
        queries, labels, class_probs = queries[keep], labels[keep], class_probs[keep]
    unique, inverse = queries.unique(return_inverse=True)
    binary, inside = mask_scores(to_image(mask_logits[unique]))
    binary, inside = binary[inverse], inside[inverse]
    scores = class_probs * inside
    order = scores.argsort(descending=True, stable=True)
    if min_score is not None:
        order = order[scores[order] > min_score]
    masks = binary[order]
    return Instances(labels=labels[order], scores=scores[order], boxes=masks_to_boxes(masks), masks=masks)


def resize_mask_logits(mask_logits: torch.Tensor, padded: Sequence[int], valid: Sequence[int], original: Sequence[int]) -> torch.Tensor:
    """mmdet's mask resizing: bilinear to the padded input, crop the padding, bilinear to the original size."""
    if mask_logits.shape[0] == 0:  # nothing detected: interpolate rejects an empty batch
        return mask_logits.new_zeros((0, *original), dtype=torch.float32)
    logits = F.interpolate(mask_logits[None].float(), size=tuple(padded), mode="bilinear", align_corners=False)
    logits = logits[..., : valid[0], : valid[1]]
    return F.interpolate(logits, size=tuple(original), mode="bilinear", align_corners=False)[0]


class Mask2FormerDetector:
    """``Mask2FormerForUniversalSegmentation`` + its image processor, as mmdet's test pipeline runs it.

    Images are resized keeping aspect ratio to ``shortest_edge``/``longest_edge`` (mmdet's
    (1333, 800) test scale, not the checkpoint's preprocessor size), normalised, and padded
    bottom/right to a multiple of ``size_divisor``.
    """

    def __init__(
        self,
        checkpoint: str,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        shortest_edge: int = 800,
        longest_edge: int = 1333,
        size_divisor: int = 32,
        max_per_image: int = 100,
    ) -> None:
        from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessorPil

        what = "GenEval detector (Mask2Former)"
        self.model = load_pretrained(Mask2FormerForUniversalSegmentation.from_pretrained, checkpoint, what=what)
        self.model.to(device=device, dtype=dtype).eval()
        self.processor = load_pretrained(Mask2FormerImageProcessorPil.from_pretrained, checkpoint, what=what)
        self.size = {"shortest_edge": shortest_edge, "longest_edge": longest_edge}
        self.size_divisor = size_divisor
        self.max_per_image = max_per_image

    @property
    def num_labels(self) -> int:
        return self.model.config.num_labels

    def to(self, device: torch.device | str, dtype: torch.dtype) -> "Mask2FormerDetector":
        self.model.to(device=device, dtype=dtype)
        return self

    @torch.no_grad()
    def __call__(self, images: list[Image.Image], min_score: Optional[float] = None) -> list[Instances]:
        """Instances of each RGB image, boxes and masks at the image's own resolution (on CPU).

        ``min_score``: drop instances scoring at most this (GenEval's threshold), to save work.
        """
        inputs = self.processor(images=images, size=self.size, size_divisor=0, return_tensors="pt")
        pixels, pixel_mask = inputs["pixel_values"], inputs["pixel_mask"]
        height, width = pixels.shape[-2:]
        pad = (0, _round_up(width, self.size_divisor) - width, 0, _round_up(height, self.size_divisor) - height)
        pixels, pixel_mask = F.pad(pixels, pad), F.pad(pixel_mask, pad)
        param = next(self.model.parameters())
        outputs = self.model(pixel_values=pixels.to(device=param.device, dtype=param.dtype))
        results = []
        for i, image in enumerate(images):
            valid = (int(pixel_mask[i].any(1).sum()), int(pixel_mask[i].any(0).sum()))
            to_image = partial(resize_mask_logits, padded=pixels.shape[-2:], valid=valid, original=(image.height, image.width))
            inst = instance_postprocess(
                outputs.class_queries_logits[i], outputs.masks_queries_logits[i],
                to_image=to_image, max_per_image=self.max_per_image, min_score=min_score,
            )
            results.append(Instances(*(t.cpu() for t in (inst.labels, inst.scores, inst.boxes, inst.masks))))
        return results


def _round_up(value: int, divisor: int) -> int:
    return int(math.ceil(value / divisor) * divisor) if divisor > 0 else value
