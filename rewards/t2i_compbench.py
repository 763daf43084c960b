"""T2I-CompBench (and T2I-CompBench++) as a reward: one evaluator per prompt category.

``category`` picks the evaluator; ``"auto"`` reads ``prompt.metadata["category"]`` (set by
``data.formats`` from the ``<category>_val.txt`` file name). Rules: docs/evaluators.md, as pure
functions in ``rewards.compbench_rules``; prompt parsing in ``rewards.compbench_text``
(spaCy ``en_core_web_sm`` when importable, else a documented rule-based stand-in).

Where each stand-in differs from the official evaluator:
- color / shape / texture (BLIP-VQA ViT-B capfilt-large at 480 px, product over noun-chunk
  questions of p(yes)/(p(yes)+p(no))): same weights, ``Salesforce/blip-vqa-capfilt-large``,
  fed at 480 px with [ENC]/[DEC] as the original (``rewards.blip_vqa``); questions never padded.
- non_spatial (OpenAI CLIP ViT-B/32 raw cosine): same weights, ``openai/clip-vit-base-patch32``,
  through ``rewards.clip_score`` (HF preprocessing: 224 bicubic + centre crop, OpenAI
  mean/std); the cosine is clipped at 0 (a reward lives in [0, 1]; cosines are ~0.2-0.35) and
  prompts over 77 tokens are truncated (``clip.tokenize`` raises).
- spatial (UniDet RS200, 722 classes, threshold 0.5; first/last NOUN; 0.25 s1 + 0.25 s2 +
  0.5 pos; < 0.5 -> 0): Grounding DINO (``IDEA-Research/grounding-dino-base``,
  ``rewards.grounding``) queried with the two nouns, best box per noun, the official geometry
  in the official 479-px frame; no girl/boy/man/woman -> person renaming (an
  open-vocabulary detector finds "girl" itself); detection scores are on Grounding DINO's
  scale, not UniDet's.
- 3d_spatial (UniDet R50 + DPT-Hybrid MiDaS): Grounding DINO + ``Intel/dpt-hybrid-midas``
  (same depth weights, ``rewards.depth``); the official ``depth[x1:x2, y1:y2]`` transposition
  is kept unless ``replicate_depth_transpose=False``; among duplicates the official takes the
  last obj1 match before obj2's first, here each noun's best box.
- numeracy (UniDet R50, label renaming, de-dup, count): Grounding DINO queried with each
  parsed object (no renaming needed), then the official de-dup and score.
- complex (3-in-1 of BLIP-VQA, UniDet with complex parsing, CLIP without adjectives): the
  same combination over the stand-ins above; sub-lists matched on the lowercase text before
  the first '.', as the official 3_in_1.py (the MILR wrapper compared whole prompts with the
  period, so it always used the 3-way mean).

Numeracy (``new_objects.txt``) and complex (``complex_val_spatial.txt``,
``complex_val_action.txt``) read the official ``examples/dataset`` files from ``data_dir``;
by default the copy bundled in ``data/benchmarks/t2i_compbench``. The MILR authors return
``score - 1`` in [-1, 0]; this reward returns the score in [0, 1].

``python -m rewards.t2i_compbench RUN_DIR [--from_details] [reward options]`` scores every
selected image of a run folder (category from each prompt's metadata unless ``--category``)
and prints the official per-category means (the category score is the mean over all
images); it also writes ``RUN_DIR/official/t2i_compbench.json`` (``rewards.run_scores``).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Optional, get_args

import torch
from PIL import Image

from data.bundled import BENCHMARKS, resolve_path
from data.prompt import Prompt
from milr.results.official import ImageScore, OfficialScore
from milr.results.runs import Run, read_run
from rewards import compbench_rules as rules
from rewards.base import Reward, RewardOutput, register
from rewards.blip_vqa import BlipVqa
from rewards.clip_score import CLIPScoreReward
from rewards.compbench_text import drop_adjectives
from rewards.depth import DepthEstimator
from rewards.grounding import Detection, GroundingDetector
from rewards.run_scores import add_scoring_arguments, group_means, print_official, reward_from_args, run_details

CategoryOption = Literal["auto", "color", "shape", "texture", "spatial", "non_spatial", "numeracy", "3d_spatial", "complex"]
CATEGORIES: tuple[str, ...] = get_args(CategoryOption)[1:]
Scored = tuple[list[float], list[dict[str, Any]]]


@register("t2i_compbench")
class T2ICompBenchReward(Reward):
    """T2I-CompBench score of each image for its prompt's category, in [0, 1].

    Models load on first use, only those the scored categories need: BLIP-VQA (~1.5 GB fp32),
    CLIP B/32 (~0.6 GB), Grounding DINO base (~0.9 GB), DPT-Hybrid (~0.5 GB).
    """

    def __init__(
        self,
        category: CategoryOption = "auto",
        data_dir: Optional[str] = None,
        blip_model: str = "Salesforce/blip-vqa-capfilt-large",
        blip_image_size: int = 480,
        np_num: int = 8,
        clip_model: str = "openai/clip-vit-base-patch32",
        detector_model: str = "IDEA-Research/grounding-dino-base",
        box_threshold: float = 0.3,
        depth_model: str = "Intel/dpt-hybrid-midas",
        depth_image_size: int = 480,
        replicate_depth_transpose: bool = True,
        batch_size: int = 16,
    ) -> None:
        if category != "auto" and category not in CATEGORIES:
            raise ValueError(f"unknown T2I-CompBench category {category!r}; expected 'auto' or one of {CATEGORIES}")
        self.category = category
        self.data_dir = data_dir
        self.np_num = np_num
        self.replicate_depth_transpose = replicate_depth_transpose
        self.blip = BlipVqa(blip_model, image_size=blip_image_size, batch_size=batch_size)
        self.clip = CLIPScoreReward(checkpoint=clip_model, batch_size=batch_size)
        self.detector = GroundingDetector(
            detector_model, box_threshold=box_threshold, batch_size=batch_size, what="T2I-CompBench detector"
        )
        self.depth = DepthEstimator(depth_model, image_size=depth_image_size, batch_size=batch_size)
        self.device, self.dtype = torch.device("cpu"), torch.float32

    def setup(self, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, backbone: Any = None) -> None:
        super().setup(device=device, dtype=dtype, backbone=backbone)
        self.clip.setup(device=self.device, dtype=self.dtype)
        for part in (self.blip, self.detector, self.depth):
            part.to(self.device, self.dtype)

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        categories = [self._category_of(p) for p in prompts]
        scores: list[float] = [0.0] * len(images)
        details: list[dict[str, Any]] = [{} for _ in images]
        for category in dict.fromkeys(categories):
            idx = [i for i, c in enumerate(categories) if c == category]
            part_scores, part_details = self._score(category, [images[i] for i in idx], [prompts[i].text for i in idx])
            for i, s, d in zip(idx, part_scores, part_details):
                scores[i] = min(max(s, 0.0), 1.0)
                details[i] = {"category": category, "score": scores[i], **d}
        return RewardOutput(scores=torch.tensor(scores, dtype=torch.float32), details=details)

    def _category_of(self, prompt: Prompt) -> str:
        if self.category != "auto":
            return self.category
        category = prompt.metadata.get("category")
        if category not in CATEGORIES:
            raise ValueError(
                f"prompt {prompt.index}: category 'auto' needs metadata['category'] in {CATEGORIES}, got {category!r}; "
                "load prompts from a <category>_val.txt file or set the reward's category option"
            )
        return category

    def _score(self, category: str, images: list[Image.Image], texts: list[str]) -> Scored:
        if category in ("color", "shape", "texture"):
            return self._attribute(images, texts)
        if category == "non_spatial":
            return self._clip(images, texts)
        if category == "spatial":
            return self._spatial(images, texts, complex_prompts=False)
        if category == "3d_spatial":
            return self._spatial_3d(images, texts)
        if category == "numeracy":
            return self._numeracy(images, texts)
        return self._complex(images, texts)

    # ----------------------------------------------------------------- evaluators
    def _attribute(self, images: list[Image.Image], texts: list[str]) -> Scored:
        questions = [rules.blip_questions(t, self.np_num) for t in texts]
        for text, qs in zip(texts, questions):
            if not qs:
                raise ValueError(f"no noun phrase in {text!r}: BLIP-VQA has nothing to ask")
        answers = self.blip.yes_probabilities(images, questions)
        scores = [rules.attribute_score(a) for a in answers]
        return scores, [{"attribute": s, "questions": dict(zip(q, a))} for s, q, a in zip(scores, questions, answers)]

    def _clip(self, images: list[Image.Image], texts: list[str]) -> Scored:
        out = self.clip.evaluate(images, [Prompt(text, i) for i, text in enumerate(texts)])
        scores = out.scores.tolist()
        details = [{"clip": s, "clip_text": t, "clip_truncated": d["truncated"]} for s, t, d in zip(scores, texts, out.details)]
        return scores, details

    def _best(self, images: list[Image.Image], objects: list[Optional[tuple[str, str]]]) -> list[tuple[Optional[Detection], ...]]:
        """The most confident detection of each of the two objects (``None``: not found)."""
        todo = [i for i, o in enumerate(objects) if o is not None]
        found = self.detector.detect([images[i] for i in todo], [list(objects[i]) for i in todo]) if todo else []
        best: list[tuple[Optional[Detection], ...]] = [(None, None)] * len(images)
        for i, detections in zip(todo, found):
            first, second = (detections[name][0] if detections[name] else None for name in objects[i])
            best[i] = (first, second)
        return best

    def _spatial(self, images: list[Image.Image], texts: list[str], complex_prompts: bool) -> Scored:
        if complex_prompts:
            objects = [rules.complex_spatial_objects(t) for t in texts]
        else:
            objects = [rules.spatial_objects(t) for t in texts]
        scores, details = [], []
        for image, text, objs, (d1, d2) in zip(images, texts, objects, self._best(images, objects)):
            locality = rules.relation_in(text, rules.SPATIAL_RELATIONS)
            position = 0.0
            if d1 is not None and d2 is not None:
                frame = [rules.to_official_frame(d.box, *image.size) for d in (d1, d2)]
                position = rules.determine_position(locality, frame[0], frame[1])
            score = rules.combine_detection_score(_score_of(d1), _score_of(d2), position, zero_below=0.5)
            scores.append(score)
            details.append(_detection_details("spatial", objs, locality, d1, d2, position, score))
        return scores, details

    def _spatial_3d(self, images: list[Image.Image], texts: list[str]) -> Scored:
        objects = [rules.spatial_objects(t) for t in texts]
        frames = [rules.official_frame_size(*im.size) for im in images]
        depths = self.depth.depth_maps(images, frames)
        scores, details = [], []
        for image, text, objs, depth, (d1, d2) in zip(images, texts, objects, depths, self._best(images, objects)):
            locality = rules.relation_in(text, rules.SPATIAL_3D_RELATIONS)
            position = 0.0
            if d1 is not None and d2 is not None:
                b1, b2 = (rules.to_official_frame(d.box, *image.size) for d in (d1, d2))
                position = rules.depth_position(locality, b1, b2, depth, transposed=self.replicate_depth_transpose)
            score = rules.combine_detection_score(_score_of(d1), _score_of(d2), position, zero_below=None)
            scores.append(score)
            details.append(_detection_details("3d", objs, locality, d1, d2, position, score))
        return scores, details

    def _numeracy(self, images: list[Image.Image], texts: list[str]) -> Scored:
        targets = [rules.parse_numeracy(t, self._object_names) for t in texts]
        for text, target in zip(texts, targets):
            if not target:
                raise ValueError(f"no '<number> <object>' with an object of new_objects.txt in numeracy prompt {text!r}")
        found = self.detector.detect(images, [[name for name, _ in t] for t in targets])
        scores, details = [], []
        for target, detections in zip(targets, found):
            counts = {name: len(rules.deduplicate([d.box for d in dets])) for name, dets in detections.items()}
            score = rules.numeracy_score(target, counts)
            scores.append(score)
            details.append({"numeracy": score, "targets": dict(target), "counts": counts})
        return scores, details

    def _complex(self, images: list[Image.Image], texts: list[str]) -> Scored:
        spatial_list, action_list = self._complex_lists
        attribute, attribute_details = self._attribute(images, texts)
        spatial, spatial_details = self._spatial(images, texts, complex_prompts=True)
        action, action_details = self._clip(images, [drop_adjectives(t) for t in texts])
        scores, details = [], []
        for i, text in enumerate(texts):
            kind = rules.complex_kind(text, spatial_list, action_list)
            scores.append(rules.three_in_one(kind, attribute[i], spatial[i], action[i]))
            details.append({"kind": kind, **attribute_details[i], **spatial_details[i], **action_details[i]})
        return scores, details

    # ----------------------------------------------------------------- data files
    def _data_path(self, what: str) -> Path:
        """``data_dir`` (relative: as ``data.bundled.resolve_path``), or the bundled official files."""
        if self.data_dir is None:
            return BENCHMARKS / "t2i_compbench"
        return resolve_path(self.data_dir, what=f"T2I-CompBench data_dir (the official prompt files {what} needs)")

    @cached_property
    def _complex_lists(self) -> tuple[frozenset[str], frozenset[str]]:
        return rules.read_complex_lists(self._data_path("complex (3-in-1)"))

    @cached_property
    def _object_names(self) -> list[tuple[str, str]]:
        path = self._data_path("numeracy") / "new_objects.txt"
        try:
            return rules.read_object_names(path)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"T2I-CompBench numeracy needs {path} (the official new_objects.txt)") from err


def _score_of(detection: Optional[Detection]) -> Optional[float]:
    return None if detection is None else detection.score


def _detection_details(
    prefix: str, objects, locality, d1: Optional[Detection], d2: Optional[Detection], position: float, score: float
) -> dict[str, Any]:
    return {
        f"{prefix}_objects": list(objects) if objects is not None else None,
        f"{prefix}_relation": locality,
        f"{prefix}_boxes": [None if d is None else {"score": d.score, "box": list(d.box)} for d in (d1, d2)],
        f"{prefix}_position": position,
        prefix: score,
    }


def evaluate_run(run: Run, reward: Optional[T2ICompBenchReward], batch_size: int = 8) -> OfficialScore:
    """Per-category means over every selected image (re-scored, or the run's own details with ``reward=None``)."""
    scored, source = run_details(run, reward, "T2I-CompBench", ("category", "score"), batch_size)
    images = [ImageScore(p.key, r.index, d["category"], float(d["score"])) for p, r, d in scored]
    note = "(T2I-CompBench reports each category alone)"
    return OfficialScore("t2i_compbench", source, group_means(images, CATEGORIES), None, images, note)


def main(argv: Optional[list[str]] = None) -> OfficialScore:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="python -m rewards.t2i_compbench", description="T2I-CompBench scores of a run folder, per category.")
    parser.add_argument("run_dir", type=str, help="a run folder (prompts with a metadata category, e.g. from <category>_val.txt)")
    add_scoring_arguments(parser, T2ICompBenchReward)
    args = parser.parse_args(argv)
    official = evaluate_run(read_run(args.run_dir), reward_from_args(T2ICompBenchReward, args), args.batch_size)
    official.write(Path(args.run_dir))
    print_official(official, "category")
    return official


if __name__ == "__main__":
    main()
