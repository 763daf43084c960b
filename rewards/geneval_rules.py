"""GenEval's rules as pure functions: which detections count, when an image is correct, the summary.

Mirrors ``evaluation/evaluate_images.py`` and ``evaluation/summary_scores.py`` of
djghosh13/geneval @ af4902f. No model lives here: the
detector and the colour classifier run outside and hand in ``Detection`` records, so every
rule can be tested on hand-built boxes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

#: The ten colours of GenEval's CLIP colour classifier, in the official order.
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")

#: GenEval's ``object_names.txt``: COCO's 80 classes in detector index order, with GenEval's
#: renames (mouse -> computer mouse, remote -> tv remote, keyboard -> computer keyboard).
OBJECT_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "computer mouse", "tv remote",
    "computer keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator",
    "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)

#: The six GenEval tasks (``tag`` of evaluation_metadata.jsonl).
TASKS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")

#: The relations ``relative_position`` can report, in the order reasons list them.
RELATIONS = ("left of", "right of", "above", "below")


@dataclass(eq=False)
class Detection:
    """One detected instance: pixel box ``(x1, y1, x2, y2)``, score, optional mask and colour.

    ``mask`` is a boolean ``[H, W]`` array/tensor at image resolution (``None``: the colour crop
    keeps the whole box). ``color`` is filled by the colour classifier for the detections the
    rules read a colour from (``color_targets``); the rules never guess a missing one.
    """

    box: tuple[float, float, float, float]
    score: float
    mask: Any = None
    color: Optional[str] = None

    def __post_init__(self) -> None:
        self.box = tuple(float(v) for v in self.box)
        self.score = float(self.score)
        if len(self.box) != 4:
            raise ValueError(f"a box is (x1, y1, x2, y2), got {self.box}")
        if self.color is not None and self.color not in COLORS:
            raise ValueError(f"colour {self.color!r} is not one of GenEval's {COLORS}")


@dataclass(frozen=True)
class Rules:
    """The evaluator's options (``--options`` of evaluate_images.py), official defaults."""

    threshold: float = 0.3  # score must be > this (all tasks but counting)
    counting_threshold: float = 0.9  # score must be > this for every class of a counting prompt
    max_objects: int = 16  # at most this many detections per class, highest scores first
    max_overlap: float = 1.0  # per-class NMS IoU; 1.0 disables NMS
    position_threshold: float = 0.1  # margin, as a fraction of the summed box sizes

    def score_threshold(self, tag: str) -> float:
        return self.counting_threshold if tag == "counting" else self.threshold


@dataclass(frozen=True)
class Verdict:
    """Outcome of one image: correct iff every clause holds; one reason per failed clause."""

    correct: bool
    reasons: tuple[str, ...]
    clauses: int

    @property
    def reason(self) -> str:
        return "\n".join(self.reasons)

    @property
    def fraction(self) -> float:
        """Share of satisfied include/exclude clauses (a soft variant, not GenEval's score)."""
        return 1.0 - len(self.reasons) / self.clauses if self.clauses else float(self.correct)


def compute_iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """IoU with the official +1 pixel convention (area = (x2 - x1 + 1) * (y2 - y1 + 1))."""

    def area(box: Sequence[float]) -> float:
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)

    inter = area((max(box_a[0], box_b[0]), max(box_a[1], box_b[1]), min(box_a[2], box_b[2]), min(box_a[3], box_b[3])))
    union = area(box_a) + area(box_b) - inter
    return inter / union if union else 0


def select(metadata: dict, detections: dict[str, list[Detection]], rules: Rules = Rules()) -> dict[str, list[Detection]]:
    """The official per-class selection: threshold by tag, sort, keep ``max_objects``, NMS.

    Ties keep the order of ``np.argsort(scores)[::-1]`` with a stable sort: of two detections
    with the same score, the one listed later comes first. Classes left empty are dropped.
    """
    threshold = rules.score_threshold(metadata["tag"])
    selected = {}
    for classname, dets in detections.items():
        ordered = [dets[i] for i in sorted(range(len(dets)), key=lambda i: dets[i].score)[::-1]]
        ordered = [d for d in ordered if d.score > threshold][: rules.max_objects]
        kept = []
        while ordered:
            best = ordered.pop(0)
            kept.append(best)
            if rules.max_overlap != 1:
                ordered = [d for d in ordered if compute_iou(best.box, d.box) < rules.max_overlap]
        if kept:
            selected[classname] = kept
    return selected


def color_targets(metadata: dict, selected: dict[str, list[Detection]]) -> dict[str, list[Detection]]:
    """The detections whose colour ``check`` reads, by class: the top ``count`` of a colour clause.

    GenEval classifies colour only for these (and only when the class has ``count`` of them),
    so the reward runs CLIP on exactly these crops and fills their ``color``.
    """
    targets: dict[str, list[Detection]] = {}
    for req in metadata.get("include", []):
        found = selected.get(req["class"], [])[: req["count"]]
        if "color" in req and len(found) >= req["count"]:
            listed = targets.setdefault(req["class"], [])
            listed.extend(d for d in found if all(d is not other for other in listed))
    return targets


def relative_position(box_a: Sequence[float], box_b: Sequence[float], margin: float = 0.1) -> set[str]:
    """Where box A lies relative to box B (image coordinates, y down), as GenEval decides it.

    Each centre offset is shrunk by ``margin * (size_a + size_b)`` towards zero, then divided
    by the norm of the *original* offset; a component beyond 0.5 names a relation. Boxes too
    close in both directions have no relation at all.
    """
    offset = ((box_a[0] + box_a[2]) / 2 - (box_b[0] + box_b[2]) / 2, (box_a[1] + box_a[3]) / 2 - (box_b[1] + box_b[3]) / 2)
    dims = (abs(box_a[2] - box_a[0]) + abs(box_b[2] - box_b[0]), abs(box_a[3] - box_a[1]) + abs(box_b[3] - box_b[1]))
    revised = [max(abs(o) - margin * d, 0) * _sign(o) for o, d in zip(offset, dims)]
    if all(abs(r) < 1e-3 for r in revised):
        return set()
    norm = math.sqrt(offset[0] * offset[0] + offset[1] * offset[1])
    dx, dy = revised[0] / norm, revised[1] / norm
    return {rel for rel, holds in zip(RELATIONS, (dx < -0.5, dx > 0.5, dy < -0.5, dy > 0.5)) if holds}


def _sign(value: float) -> float:
    return (value > 0) - (value < 0)


def check(metadata: dict, selected: dict[str, list[Detection]], rules: Rules = Rules()) -> Verdict:
    """GenEval's ``evaluate``: include clauses ANDed, exclude clauses ORed, official reasons.

    Colour and position are judged on the top ``count`` detections of a class only; a
    position clause needs its target include-group to have matched.
    """
    reasons: list[str] = []
    matched_groups: list[Optional[list[Detection]]] = []
    includes, excludes = metadata.get("include", []), metadata.get("exclude", [])
    for req in includes:
        classname, count = req["class"], req["count"]
        found = selected.get(classname, [])[:count]
        reason = None
        if len(found) < count:
            reason = f"expected {classname}>={count}, found {len(found)}"
        if reason is None and "color" in req:
            reason = _color_failure(req, found)
        if reason is None and "position" in req:
            reason = _position_failure(req, found, matched_groups, rules.position_threshold)
        if reason is not None:
            reasons.append(reason)
        matched_groups.append(found if reason is None else None)
    for req in excludes:
        found = len(selected.get(req["class"], []))
        if found >= req["count"]:
            reasons.append(f"expected {req['class']}<{req['count']}, found {found}")
    return Verdict(correct=not reasons, reasons=tuple(reasons), clauses=len(includes) + len(excludes))


def _color_failure(req: dict, found: list[Detection]) -> Optional[str]:
    colors = []
    for det in found:
        if det.color is None:
            raise ValueError(f"the colour of a {req['class']!r} detection is needed but was not classified")
        colors.append(det.color)
    wanted = req["color"]
    if colors.count(wanted) >= req["count"]:
        return None
    tally = ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
    return f"expected {wanted} {req['class']}>={req['count']}, found {colors.count(wanted)} {wanted}; and {tally}"


def _position_failure(req: dict, found: list[Detection], matched_groups: list, margin: float) -> Optional[str]:
    expected, group = req["position"]
    if not 0 <= group < len(matched_groups):
        raise ValueError(f"position clause of {req['class']!r} refers to include group {group}, which precedes no clause")
    targets = matched_groups[group]
    if targets is None:
        return f"no target for {req['class']} to be {expected}"
    for det in found:
        for target in targets:
            relations = relative_position(det.box, target.box, margin)
            if expected not in relations:
                found_text = " and ".join(r for r in RELATIONS if r in relations)
                return f"expected {req['class']} {expected} target, found {found_text} target"
    return None


def judge(metadata: dict, detections: dict[str, list[Detection]], rules: Rules = Rules()) -> tuple[bool, str]:
    """Is the image correct for this ``evaluation_metadata.jsonl`` line, and if not, why.

    ``detections`` maps class names to the detector's raw detections (any order, any score);
    the official selection is applied here. Detections whose colour a clause reads must have
    ``color`` set (see ``color_targets``).
    """
    verdict = check(metadata, select(metadata, detections, rules), rules)
    return verdict.correct, verdict.reason


def details(selected: dict[str, list[Detection]]) -> dict[str, list[list[float]]]:
    """The official ``details`` field: ``{class: [[x1, y1, x2, y2, score], ...]}`` of kept detections."""
    return {name: [[*d.box, d.score] for d in dets] for name, dets in selected.items()}


@dataclass(frozen=True)
class Summary:
    """``summary_scores.py``: image/prompt accuracy, per-task accuracy, and their unweighted mean."""

    images: int
    prompts: int
    correct_images: float
    correct_prompts: float
    tasks: dict[str, tuple[int, int]] = field(default_factory=dict)  # tag -> (correct, total), first-seen order

    @property
    def overall(self) -> float:
        """GenEval score: mean over the tasks present of each task's image accuracy."""
        return sum(c / n for c, n in self.tasks.values()) / len(self.tasks) if self.tasks else float("nan")


def summarize(results: Iterable[dict]) -> Summary:
    """Summarise rows of ``results.jsonl`` (needs ``tag``, ``correct`` and ``metadata`` of each).

    Prompts are grouped by their ``metadata`` string, as the official script does; a prompt is
    correct if any of its images is.
    """
    rows = list(results)
    if not rows:
        raise ValueError("no results to summarise")
    prompts: dict[str, bool] = {}
    tasks: dict[str, tuple[int, int]] = {}
    for row in rows:
        key = row["metadata"] if isinstance(row["metadata"], str) else json.dumps(row["metadata"])
        prompts[key] = prompts.get(key, False) or bool(row["correct"])
        correct, total = tasks.get(row["tag"], (0, 0))
        tasks[row["tag"]] = (correct + bool(row["correct"]), total + 1)
    return Summary(
        images=len(rows),
        prompts=len(prompts),
        correct_images=sum(bool(r["correct"]) for r in rows) / len(rows),
        correct_prompts=sum(prompts.values()) / len(prompts),
        tasks=tasks,
    )
