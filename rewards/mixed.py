"""The MILR paper's "mixed reward": Grounding DINO + GIT VQA colour + UnifiedReward (docs/authors_code.md).

For GenEval-style prompts (``metadata["include"]``), three experts score each image in [0, 1]:
- **detector** task score (Grounding DINO, ``rewards.grounding``; default
  ``IDEA-Research/grounding-dino-tiny`` = the SwinT-OGC weights the authors used), with the
  task picked from the metadata as the authors do: *spatial* if an include item has a
  ``position`` (0.2 per object found + ``determine_position``/2 on the best boxes, in
  normalised image coordinates), else *numeracy* if items have ``count`` (every GenEval
  item does; per object 1/n if the IoU-0.5-NMS count matches, 0.2/n if it does not, 0 if
  absent), else *object* (share of objects found);
- **GIT VQA colour** (``microsoft/git-large-vqav2``): per include item "Is this a {color}
  {class}?" or "Are there {n} {color} {class}s?", p(yes)/(p(yes)+p(no)) after [CLS]+question,
  averaged;
- **UnifiedReward** (``rewards.unified_reward``, ``CodeGoat24/UnifiedReward-qwen-7b``), its
  1-5 score mapped to [0, 1].
Score = 0.4·det + 0.4·git + 0.2·unified for ``tag`` colors/color_attr, else 0.6/0.2/0.2. The
authors return ``score - 1`` in [-1, 0]; this reward returns the score in [0, 1].

Two bugs of the authors' wrapper are fixed unless ``reference_quirks=True``: their
``determine_position`` has no branch for GenEval's "above" (scores 0), and their numeracy
NMS is run on centre-format boxes as if they were corners (so it almost never merges).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from PIL import Image
from transformers import AutoTokenizer, GitForCausalLM
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from data.prompt import Prompt
from rewards.base import Reward, RewardOutput, register, score
from rewards.compbench_rules import Box, determine_position
from rewards.grounding import Detection, GroundingDetector
from rewards.hub import LazyModel, load_pretrained
from rewards.unified_reward import UnifiedReward

#: (detector, GIT colour, UnifiedReward) weights
COLOUR_WEIGHTS = (0.4, 0.4, 0.2)
DEFAULT_WEIGHTS = (0.6, 0.2, 0.2)
COLOUR_TAGS = ("colors", "color_attr")


# --------------------------------------------------------------------------- pure rules
def mixed_weights(tag: Optional[str]) -> tuple[float, float, float]:
    """The authors' weights: colour tasks lean on the GIT colour expert."""
    return COLOUR_WEIGHTS if tag in COLOUR_TAGS else DEFAULT_WEIGHTS


def mixed_score(tag: Optional[str], detector: float, colour: float, unified: float) -> float:
    w_det, w_git, w_uni = mixed_weights(tag)
    return w_det * detector + w_git * colour + w_uni * unified


def colour_questions(include: list[dict[str, Any]]) -> list[str]:
    """The authors' GIT questions, one per include item (colour may be empty)."""
    questions = []
    for item in include:
        color, obj, count = item.get("color", ""), item.get("class", ""), item.get("count", 1)
        questions.append(f"Are there {count} {color} {obj}s?" if count and count > 1 else f"Is this a {color} {obj}?")
    return questions


def detector_task(include: list[dict[str, Any]]) -> dict[str, Any]:
    """Which detector score applies, and its arguments (the authors' precedence)."""
    positioned = next((item for item in include if "position" in item), None)
    if positioned is not None:
        others = [item for item in include if item is not positioned]
        if not others or others[0]["class"] == positioned["class"]:
            raise ValueError(f"position requirement {positioned} needs a reference object of another class")
        return {"task": "spatial", "obj1": positioned["class"], "obj2": others[0]["class"], "locality": positioned["position"][0]}
    if any("count" in item for item in include):
        return {"task": "numeracy", "counts": [(item["class"], item["count"]) for item in include if "count" in item]}
    return {"task": "object", "objects": [item["class"] for item in include]}


def spatial_task_score(boxes1: list[Box], boxes2: list[Box], locality: str, reference_quirks: bool = False) -> float:
    """0.2 per object found; both found: + determine_position(best boxes)/2 (max 0.9).

    Boxes are normalised to [0, 1] as in the authors' wrapper (so "next to"-type relations,
    absent from GenEval, always score 1 there). "above" is read as "top of" unless
    ``reference_quirks`` (then it scores 0, as theirs).
    """
    score = 0.2 * bool(boxes1) + 0.2 * bool(boxes2)
    if boxes1 and boxes2:
        if locality == "above" and not reference_quirks:
            locality = "top of"
        score += determine_position(locality, boxes1[0], boxes2[0]) / 2
    return score


def box_iou_unclamped(box1: Box, box2: Box) -> float:
    """torchvision ``box_iou`` arithmetic: areas are not clamped, only the intersection is."""
    inter = max(0.0, min(box1[2], box2[2]) - max(box1[0], box2[0])) * max(0.0, min(box1[3], box2[3]) - max(box1[1], box2[1]))
    union = (box1[2] - box1[0]) * (box1[3] - box1[1]) + (box2[2] - box2[0]) * (box2[3] - box2[1]) - inter
    return inter / union if union > 0 else 0.0


def nms(boxes: list[Box], scores: list[float], iou_threshold: float = 0.5) -> list[int]:
    """Greedy NMS like ``torchvision.ops.nms``: indices kept, highest score first."""
    keep: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda k: -scores[k]):
        if all(box_iou_unclamped(boxes[i], boxes[k]) <= iou_threshold for k in keep):
            keep.append(i)
    return keep


def numeracy_task_score(detections: dict[str, list[tuple[Box, float]]], counts: list[tuple[str, int]]) -> float:
    """Per object (weight 1/n): 1 if the NMS-kept count equals the target, 0.2 if it does
    not, 0 if the object is not detected."""
    weight = 1.0 / len(counts)
    score = 0.0
    for name, expected in counts:
        found = detections.get(name, [])
        if found:
            kept = nms([b for b, _ in found], [s for _, s in found], 0.5)
            score += weight if len(kept) == expected else 0.2 * weight
    return score


def object_task_score(detections: dict[str, list[Any]], objects: list[str]) -> float:
    """Share of the objects detected at least once."""
    return sum(1.0 / len(objects) for name in objects if detections.get(name))


# --------------------------------------------------------------------------- GIT VQA
class GitVqa(LazyModel):
    """Lazily loaded GIT answering yes/no questions: p(yes)/(p(yes)+p(no)) of the next token."""

    def __init__(self, checkpoint: str = "microsoft/git-large-vqav2", batch_size: int = 16) -> None:
        super().__init__(checkpoint, batch_size)

    def _load(self) -> None:
        what = "mixed reward GIT VQA colour model"
        self.model = load_pretrained(GitForCausalLM.from_pretrained, self.checkpoint, what=what)
        self.processor = load_pretrained(CLIPImageProcessorPil.from_pretrained, self.checkpoint, what=what)
        self.tokenizer = load_pretrained(AutoTokenizer.from_pretrained, self.checkpoint, what=what)
        self.yes_id, self.no_id = (self._single_token(word) for word in ("yes", "no"))

    def _single_token(self, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"GIT tokenizer of {self.checkpoint!r} splits {word!r} into {ids}")
        return ids[0]

    @torch.no_grad()
    def yes_probabilities(self, images: list[Image.Image], questions: list[list[str]]) -> list[list[float]]:
        """``questions[i]`` asked about ``images[i]``; returns the same nested layout."""
        self.load()
        pixels = self.processor([im.convert("RGB") for im in images], return_tensors="pt").pixel_values
        pairs = [(i, q) for i, qs in enumerate(questions) for q in qs]
        probs: list[float] = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            probs.extend(self._ask(pixels[[i for i, _ in chunk]], [q for _, q in chunk]))
        out, k = [], 0
        for qs in questions:
            out.append(probs[k : k + len(qs)])
            k += len(qs)
        return out

    def _ask(self, pixels: torch.Tensor, questions: list[str]) -> list[float]:
        # [CLS] + question tokens, no [SEP]; right padding never reaches earlier (causal) positions
        ids = [[self.tokenizer.cls_token_id] + self.tokenizer.encode(q, add_special_tokens=False) for q in questions]
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids], device=self.device)
        logits = self.model(pixel_values=pixels.to(device=self.device, dtype=self.dtype), input_ids=input_ids).logits
        last = torch.tensor([logits.shape[1] - width + len(x) - 1 for x in ids], device=self.device)
        logits = logits[torch.arange(len(ids), device=self.device), last].float()
        return torch.sigmoid(logits[:, self.yes_id] - logits[:, self.no_id]).tolist()


# --------------------------------------------------------------------------- the reward
@register("mixed")
class MixedReward(Reward):
    """Mixed reward of the MILR paper for GenEval-style prompts, in [0, 1].

    Memory at real size: GIT-large (~1.6 GB fp32), Grounding DINO tiny (~0.7 GB fp32),
    UnifiedReward-qwen-7b (~16 GB bf16). ``unified`` replaces the UnifiedReward expert by
    any ``Reward`` (then ``unified_model`` is unused).
    """

    def __init__(
        self,
        git_model: str = "microsoft/git-large-vqav2",
        detector_model: str = "IDEA-Research/grounding-dino-tiny",
        unified_model: str = "CodeGoat24/UnifiedReward-qwen-7b",
        unified: Optional[Reward] = None,
        box_threshold: float = 0.3,
        reference_quirks: bool = False,
        batch_size: int = 16,
    ) -> None:
        self.unified = UnifiedReward(model_name_or_path=unified_model) if unified is None else unified
        self.git = GitVqa(git_model, batch_size=batch_size)
        self.detector = GroundingDetector(
            detector_model, box_threshold=box_threshold, batch_size=batch_size, what="mixed reward Grounding DINO"
        )
        self.reference_quirks = reference_quirks
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def setup(self, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, backbone: Any = None) -> None:
        super().setup(device=device, dtype=dtype, backbone=backbone)
        self.git.to(self.device, self.dtype)
        self.detector.to(self.device, self.dtype)
        if hasattr(self.unified, "setup"):
            self.unified.setup(device=device, dtype=dtype, backbone=backbone)

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        includes = [self._include(p) for p in prompts]
        tasks = [detector_task(inc) for inc in includes]
        answers = self.git.yes_probabilities(images, [colour_questions(inc) for inc in includes])
        found = self.detector.detect(images, [[item["class"] for item in inc] for inc in includes])
        unified = score(self.unified, images, prompts)
        scores, details = [], []
        for i, (image, prompt) in enumerate(zip(images, prompts)):
            colour = sum(answers[i]) / len(answers[i])
            detector = self._detector_score(tasks[i], found[i], image.size)
            total = mixed_score(prompt.metadata.get("tag"), detector, colour, float(unified.scores[i]))
            scores.append(min(max(total, 0.0), 1.0))
            details.append({
                "score": scores[-1],
                "detector": detector,
                "detector_task": tasks[i]["task"],
                "detections": {name: [d.score for d in dets] for name, dets in found[i].items()},
                "git_colour": colour,
                "git_answers": dict(zip(colour_questions(includes[i]), answers[i])),
                "unified": float(unified.scores[i]),
                "unified_details": unified.details[i],
            })
        return RewardOutput(scores=torch.tensor(scores, dtype=torch.float32), details=details)

    @staticmethod
    def _include(prompt: Prompt) -> list[dict[str, Any]]:
        include = prompt.metadata.get("include")
        if not include:
            raise ValueError(
                f"prompt {prompt.index}: the mixed reward needs GenEval-style metadata['include'] (objects with "
                "class/count/color/position); load prompts from evaluation_metadata.jsonl"
            )
        return include

    def _detector_score(self, task: dict[str, Any], found: dict[str, list[Detection]], size: tuple[int, int]) -> float:
        if task["task"] == "spatial":
            corners = {name: [_normalised(d.box, size) for d in dets] for name, dets in found.items()}
            return spatial_task_score(corners[task["obj1"]], corners[task["obj2"]], task["locality"], self.reference_quirks)
        if task["task"] == "numeracy":
            centre = self.reference_quirks
            scored = {name: [(_normalised(d.box, size, centre), d.score) for d in dets] for name, dets in found.items()}
            return numeracy_task_score(scored, task["counts"])
        return object_task_score(found, task["objects"])


def _normalised(box: Box, size: tuple[int, int], centre_format: bool = False) -> Box:
    """A pixel box in [0, 1] image coordinates; ``centre_format`` gives the authors' raw
    ``(cx, cy, w, h)`` (what their NMS mistakes for corners)."""
    width, height = size
    x1, y1, x2, y2 = box[0] / width, box[1] / height, box[2] / width, box[3] / height
    if centre_format:
        return ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    return (x1, y1, x2, y2)
