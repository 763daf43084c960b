"""GenEval as a reward: Mask2Former detections and CLIP colours, judged by GenEval's own rules.

Stand-ins for the official mmdet/open_clip models (docs/evaluators.md): the detector is
``facebook/mask2former-swin-small-coco-instance`` (same Swin-S Mask2Former, FAIR weights),
post-processed with mmdet's formula (``rewards.mask2former``); colours come from
``openai/clip-vit-large-patch14`` (the same weights as open_clip ``ViT-L-14/openai``). The
rules are the pure functions of ``rewards.geneval_rules``.

Colour is classified exactly where GenEval classifies it: for each colour clause, on the top
``count`` selected detections of its class (``color_targets``); the reward fills their
``Detection.color`` and the rules read it. The score is 1.0 for a correct image, else 0.0
(``score="fraction"``: the share of satisfied clauses, a soft variant that is not GenEval's).

Also a command line evaluator for a folder in GenEval's layout:
``python -m rewards.geneval <image_folder> --out results.jsonl`` writes the official
``results.jsonl`` rows and prints the official summary. On a run folder it scores the
selected image of every repeat and also writes ``official/geneval.json`` (``rewards.run_scores``);
``--from_details`` reads the verdicts the run's own GenEval reward stored, with no model.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from PIL import Image

from data.prompt import Prompt
from milr.results.layout import RESULT_FILE
from milr.results.official import ImageScore, OfficialScore
from milr.results.runs import Run, read_run
from rewards.base import Reward, RewardOutput, register
from rewards.geneval_rules import (
    COLORS,
    OBJECT_NAMES,
    TASKS,
    Detection,
    Rules,
    Summary,
    Verdict,
    check,
    color_targets,
    details,
    judge,
    select,
    summarize,
)
from rewards.hub import load_pretrained
from rewards.mask2former import Instances, Mask2FormerDetector
from rewards.run_scores import add_scoring_arguments, reward_from_args, run_details, score_batches

__all__ = [  # the rules are re-exported: ``rewards.geneval.judge`` / ``Detection`` are the public API
    "COLORS", "OBJECT_NAMES", "TASKS", "Detection", "Rules", "Verdict", "judge", "summarize",
    "ColorClassifier", "GenEvalReward", "color_crop", "evaluate_folder", "evaluate_run", "find_samples", "main", "print_summary",
    "read_object_names",
]

#: Templates of GenEval's zero-shot colour classifier (clip_benchmark): {c} is the colour.
COLOR_TEMPLATES = ("a photo of a {c} {classname}", "a photo of a {c}-colored {classname}", "a photo of a {c} object")


def read_object_names(path: Optional[str] = None) -> tuple[str, ...]:
    """Class names by detector index: ``path`` (one per line, like object_names.txt) or the built-in list."""
    if path is None:
        return OBJECT_NAMES
    names = tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())
    if len(names) != len(OBJECT_NAMES):
        raise ValueError(f"{path}: expected {len(OBJECT_NAMES)} class names, found {len(names)}")
    return names


def color_crop(image: Image.Image, det: Detection, bgcolor: str = "#999", crop: bool = True) -> Image.Image:
    """GenEval's colour crop: pixels outside the instance mask painted ``bgcolor``, then cropped to the box.

    ``bgcolor="original"`` keeps the surrounding pixels, as the official option does.
    """
    image = image.convert("RGB")
    if det.mask is not None and bgcolor != "original":
        mask = Image.fromarray(torch.as_tensor(det.mask, dtype=torch.bool).numpy())
        if mask.size != image.size:
            raise ValueError(f"mask size {mask.size} differs from image size {image.size}")
        image = Image.composite(image, Image.new("RGB", image.size, color=bgcolor), mask)
    return image.crop(det.box) if crop else image


class ColorClassifier:
    """CLIP zero-shot colour classifier built like clip_benchmark's ``zero_shot_classifier``.

    Per colour: the three templates are embedded, L2-normalised, averaged and re-normalised;
    a crop's colour is the argmax of its normalised image embedding against these.
    """

    def __init__(self, checkpoint: str, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

        what = "GenEval colour classifier (CLIP)"
        self.model = load_pretrained(CLIPModel.from_pretrained, checkpoint, what=what).to(device=device, dtype=dtype).eval()
        self.tokenizer = load_pretrained(AutoTokenizer.from_pretrained, checkpoint, what=what)
        self.processor = load_pretrained(CLIPImageProcessorPil.from_pretrained, checkpoint, what=what)
        self._weights: dict[str, torch.Tensor] = {}

    def to(self, device: torch.device | str, dtype: torch.dtype) -> "ColorClassifier":
        self.model.to(device=device, dtype=dtype)
        self._weights.clear()
        return self

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def text_weights(self, classname: str) -> torch.Tensor:
        """``[len(COLORS), D]`` unit colour embeddings for one class name (cached)."""
        if classname not in self._weights:
            texts = [t.format(c=c, classname=classname) for c in COLORS for t in COLOR_TEMPLATES]
            tokens = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self._device)
            emb = F.normalize(self.model.get_text_features(**tokens).pooler_output.float(), dim=-1)
            self._weights[classname] = F.normalize(emb.view(len(COLORS), len(COLOR_TEMPLATES), -1).mean(1), dim=-1)
        return self._weights[classname]

    @torch.no_grad()
    def __call__(self, crops: list[Image.Image], classname: str) -> list[str]:
        pixels = self.processor(images=crops, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(device=self._device, dtype=next(self.model.parameters()).dtype)
        feats = F.normalize(self.model.get_image_features(pixel_values=pixels).pooler_output.float(), dim=-1)
        return [COLORS[i] for i in (feats @ self.text_weights(classname).T).argmax(-1).tolist()]


@register("geneval")
class GenEvalReward(Reward):
    """GenEval correctness of each image for its prompt's ``evaluation_metadata.jsonl`` line."""

    def __init__(
        self,
        detector: str = "facebook/mask2former-swin-small-coco-instance",
        clip_model: str = "openai/clip-vit-large-patch14",
        object_names: Optional[str] = None,
        threshold: float = 0.3,
        counting_threshold: float = 0.9,
        max_objects: int = 16,
        max_overlap: float = 1.0,
        position_threshold: float = 0.1,
        bgcolor: str = "#999",
        crop: bool = True,
        detector_size: list[int] = [800, 1333],
        score: Literal["binary", "fraction"] = "binary",
        dtype: Optional[str] = "float32",
    ) -> None:
        """
        Args:
            detector: Mask2Former COCO instance checkpoint (hub name or local directory).
            clip_model: CLIP checkpoint of the colour classifier (hub name or local directory).
            object_names: object_names.txt mapping detector class index to GenEval class name;
                None uses the built-in official list.
            threshold: detection score threshold (strict >) for all tasks but counting.
            counting_threshold: score threshold (strict >) for every class of a counting prompt.
            max_objects: at most this many detections per class.
            max_overlap: per-class NMS IoU threshold; 1.0 disables NMS (official default).
            position_threshold: margin of the relative-position rule.
            bgcolor: fill outside the instance mask in colour crops ("original" keeps the image).
            crop: crop colour crops to the detection box.
            detector_size: [shortest edge, longest edge] of the detector input (mmdet test scale).
            score: "binary" (1.0 iff correct, GenEval) or "fraction" of satisfied clauses.
            dtype: dtype of both models; None follows the backbone's dtype given to setup().
        """
        if len(detector_size) != 2:
            raise ValueError(f"detector_size is [shortest_edge, longest_edge], got {detector_size}")
        self.detector_name, self.clip_name = detector, clip_model
        self.names = read_object_names(object_names)
        self.rules = Rules(
            threshold=threshold,
            counting_threshold=counting_threshold,
            max_objects=max_objects,
            max_overlap=max_overlap,
            position_threshold=position_threshold,
        )
        self.bgcolor, self.crop = bgcolor, crop
        self.detector_size = tuple(detector_size)
        self.score = score
        self.model_dtype = None if dtype is None else getattr(torch, dtype)
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.detector: Optional[Mask2FormerDetector] = None
        self.colors: Optional[ColorClassifier] = None

    def setup(self, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, backbone: Any = None) -> None:
        super().setup(device=device, dtype=dtype, backbone=backbone)
        if self.detector is not None:
            self.detector.to(self.device, self._run_dtype)
            self.colors.to(self.device, self._run_dtype)

    @property
    def _run_dtype(self) -> torch.dtype:
        return self.dtype if self.model_dtype is None else self.model_dtype

    def _load(self) -> None:
        if self.detector is not None:
            return
        shortest, longest = self.detector_size
        detector = Mask2FormerDetector(
            self.detector_name, device=self.device, dtype=self._run_dtype, shortest_edge=shortest, longest_edge=longest
        )
        if detector.num_labels != len(self.names):
            raise ValueError(f"detector {self.detector_name!r} has {detector.num_labels} classes, GenEval needs {len(self.names)}")
        self.colors = ColorClassifier(self.clip_name, device=self.device, dtype=self._run_dtype)
        self.detector = detector

    def _metadata(self, prompt: Prompt) -> dict:
        meta = prompt.metadata
        if "tag" not in meta or "include" not in meta:
            raise ValueError(
                f"prompt {prompt.index}: GenEval needs its evaluation_metadata.jsonl line as metadata "
                f"(tag, include), got keys {sorted(meta)}"
            )
        unknown = {r["class"] for r in meta["include"] + meta.get("exclude", [])} - set(self.names)
        if unknown:
            raise ValueError(f"prompt {prompt.index}: classes {sorted(unknown)} are not among the detector's class names")
        return meta

    def _detections(self, inst: Instances) -> dict[str, list[Detection]]:
        found: dict[str, list[Detection]] = {}
        for label, score, box, mask in zip(inst.labels.tolist(), inst.scores.tolist(), inst.boxes.tolist(), inst.masks.numpy()):
            found.setdefault(self.names[label], []).append(Detection(box=box, score=score, mask=mask))
        return found

    def _classify_colors(self, images: list[Image.Image], metas: list[dict], selected: list[dict]) -> None:
        """Fill ``color`` of the detections the rules read, one CLIP batch per class name."""
        by_class: dict[str, list[tuple[Image.Image, Detection]]] = {}
        for image, meta, sel in zip(images, metas, selected):
            for classname, dets in color_targets(meta, sel).items():
                by_class.setdefault(classname, []).extend((image, d) for d in dets)
        for classname, items in by_class.items():
            crops = [color_crop(image, det, self.bgcolor, self.crop) for image, det in items]
            for (_, det), color in zip(items, self.colors(crops, classname)):
                det.color = color

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        metas = [self._metadata(p) for p in prompts]
        if not images:
            return RewardOutput(scores=torch.zeros(0), details=[])
        self._load()
        images = [im.convert("RGB") for im in images]
        floor = min(self.rules.threshold, self.rules.counting_threshold)
        raw = [self._detections(inst) for inst in self.detector(images, min_score=floor)]
        selected = [select(meta, dets, self.rules) for meta, dets in zip(metas, raw)]
        self._classify_colors(images, metas, selected)
        verdicts = [check(meta, sel, self.rules) for meta, sel in zip(metas, selected)]
        scores = [float(v.correct) if self.score == "binary" else v.fraction for v in verdicts]
        info = [
            {
                "tag": meta["tag"],
                "correct": v.correct,
                "reason": v.reason,
                "fraction": v.fraction,
                "detections": details(sel),
                "colors": {c: [d.color for d in dets if d.color] for c, dets in sel.items() if any(d.color for d in dets)},
            }
            for meta, sel, v in zip(metas, selected, verdicts)
        ]
        return RewardOutput(scores=torch.tensor(scores, dtype=torch.float32), details=info)


def find_samples(folder: str) -> list[tuple[str, dict]]:
    """``(image path, metadata)`` of every sample in GenEval's layout, in index then file-name order.

    Layout: ``<folder>/<digits>/metadata.jsonl`` (one JSON object) and ``samples/<digits>.png``.
    """
    samples = []
    subfolders = sorted((s for s in os.listdir(folder) if s.isdigit() and os.path.isdir(os.path.join(folder, s))), key=int)
    for sub in subfolders:
        with open(os.path.join(folder, sub, "metadata.jsonl")) as fp:
            metadata = json.load(fp)
        sample_dir = os.path.join(folder, sub, "samples")
        for name in sorted(os.listdir(sample_dir)):
            path = os.path.join(sample_dir, name)
            if os.path.isfile(path) and re.match(r"\d+\.png", name):
                samples.append((path, metadata))
    return samples


def _row(path: str, meta: dict, info: dict) -> dict:
    """One ``results.jsonl`` row (evaluate_images.py's fields)."""
    return {
        "filename": path,
        "tag": meta["tag"],
        "prompt": meta["prompt"],
        "correct": info["correct"],
        "reason": info["reason"],
        "metadata": json.dumps(meta),
        "details": json.dumps(info["detections"]),
    }


def evaluate_folder(reward: GenEvalReward, folder: str, batch_size: int = 8) -> list[dict]:
    """Official ``results.jsonl`` rows for every sample of ``folder``."""

    def load(sample: tuple[str, dict]) -> tuple[str, Prompt]:
        path, meta = sample
        return path, Prompt(meta["prompt"], int(Path(path).parent.parent.name), meta)

    scored = score_batches(reward, find_samples(folder), load, batch_size, "GenEval")
    return [_row(path, meta, info) for (path, meta), _, info in scored]


def evaluate_run(run: Run, reward: Optional[GenEvalReward], batch_size: int = 8) -> tuple[list[dict], OfficialScore]:
    """Rows and official summary of every selected image of a run folder: re-scored by
    ``reward``, or (``reward=None``) read from the details the run's GenEval reward stored."""
    scored, source = run_details(run, reward, "GenEval", ("tag", "correct", "reason", "detections"), batch_size)
    rows = [_row(str(r.sample), p.metadata, d) for p, r, d in scored]
    summary = summarize(rows)
    images = [ImageScore(p.key, r.index, p.metadata["tag"], float(bool(d["correct"]))) for p, r, d in scored]
    groups = {tag: {"score": c / n, "n": n} for tag, (c, n) in summary.tasks.items()}
    return rows, OfficialScore("geneval", source, groups, summary.overall, images)


def print_summary(summary: Summary, console: Any = None) -> None:
    """The official summary (totals, per-task accuracy, overall score) as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"Total images: {summary.images}")
    console.print(f"Total prompts: {summary.prompts}")
    console.print(f"% correct images: {summary.correct_images:.2%}")
    console.print(f"% correct prompts: {summary.correct_prompts:.2%}")
    table = Table(title="Task breakdown")
    for column in ("task", "accuracy", "correct / images"):
        table.add_column(column)
    for tag, (correct, total) in summary.tasks.items():
        table.add_row(tag, f"{correct / total:.2%}", f"{correct} / {total}")
    console.print(table)
    console.print(f"Overall score (avg. over tasks): {summary.overall:.5f}")


def main(argv: Optional[list[str]] = None) -> Summary:
    """``python -m rewards.geneval <image_folder> --out results.jsonl [--from_details] [reward options]``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="python -m rewards.geneval", description="GenEval evaluation of a folder of generated images.")
    parser.add_argument("image_folder", type=str, help="a run folder, or a folder in GenEval's layout (<index:05d>/metadata.jsonl, samples/*.png)")
    parser.add_argument("--out", type=str, default="results.jsonl", help="where to write results.jsonl")
    add_scoring_arguments(parser, GenEvalReward)
    args = parser.parse_args(argv)
    is_run = any(Path(args.image_folder).glob(f"*/{RESULT_FILE}"))
    if args.from_details and not is_run:
        raise ValueError(f"--from_details needs a run folder; {args.image_folder} has no */{RESULT_FILE}")
    reward = reward_from_args(GenEvalReward, args)
    if is_run:
        rows, official = evaluate_run(read_run(args.image_folder), reward, args.batch_size)
        official.write(Path(args.image_folder))
    else:
        rows = evaluate_folder(reward, args.image_folder, args.batch_size)
    if os.path.dirname(args.out):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fp:
        fp.writelines(json.dumps(row) + "\n" for row in rows)
    summary = summarize(rows)
    print_summary(summary)
    return summary


if __name__ == "__main__":
    main()
