"""T2I-CompBench's scoring rules as pure functions (docs/evaluators.md, T2I-CompBench++ code).

Everything here is model-free so it can be tested exhaustively: BLIP-VQA questions and their
product, the 2D-spatial geometry (``determine_position``, the 479-px frame its 150-px
distance refers to, the ``< 0.5`` zeroing), 3D depth comparison, numeracy parsing, de-dup and
score, the complex category's object parsing and its 3-in-1 combination. Boxes are
``(x_min, y_min, x_max, y_max)`` tuples.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np

from rewards.compbench_text import Token, noun_chunks, nouns, tokens

Box = tuple[float, float, float, float]

#: chunks the MILR authors' BLIP-VQA wrapper never asks about
EXCLUDED_CHUNKS = frozenset({"top", "the side", "the left", "the right"})
#: relation words of the 2D evaluator, in its search order (first substring match wins)
SPATIAL_RELATIONS = (
    "on side of", "next to", "near", "on the left of", "on the right of", "on the bottom of", "on the top of", "on top of",
)
#: prepositions whose neighbouring nouns are the objects of a complex prompt (``--complex True``)
COMPLEX_PREPOSITIONS = ("on top of", "on bottom of", "on the left", "on the right", "next to", "on side of", "near")
SPATIAL_3D_RELATIONS = ("in front of", "behind", "hidden")
NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
#: the official detector's input: torchvision ``Resize(479, max_size=480)``; 150 px refers to it
OFFICIAL_FRAME = (479, 480)
ComplexKind = Literal["spatial", "action", "spatialaction"]


# --------------------------------------------------------------------------- attribute binding
def pre_question(question: str, max_words: int = 50) -> str:
    """BLIP's question normalisation: lowercase, drop ``.!"()*#:;~``, strip right, cap words."""
    question = re.sub(r"([.!\"()*#:;~])", "", question.lower()).rstrip(" ")
    return " ".join(question.split(" ")[:max_words])


def blip_questions(prompt: str, np_num: int = 8) -> list[str]:
    """One question per noun chunk ("a green bench?"), excluded chunks dropped, at most ``np_num``."""
    chunks = [chunk for chunk in noun_chunks(prompt) if chunk not in EXCLUDED_CHUNKS][:np_num]
    return [pre_question(f"{chunk}?") for chunk in chunks]


def attribute_score(yes_probabilities: Sequence[float]) -> float:
    """Image score = product of the per-question yes-probabilities."""
    return float(np.prod(np.asarray(yes_probabilities, dtype=np.float64)))


# --------------------------------------------------------------------------- 2D geometry
def iou(box1: Box, box2: Box) -> float:
    """Plain IoU (no +1 pixel), 0 for degenerate boxes."""
    x_overlap = max(0.0, min(box1[2], box2[2]) - max(box1[0], box2[0]))
    y_overlap = max(0.0, min(box1[3], box2[3]) - max(box1[1], box2[1]))
    inter = x_overlap * y_overlap
    union = (box1[2] - box1[0]) * (box1[3] - box1[1]) + (box2[2] - box2[0]) * (box2[3] - box2[1]) - inter
    return inter / union if union > 0 else 0.0


def determine_position(
    locality: Optional[str], box1: Box, box2: Box, iou_threshold: float = 0.1, distance_threshold: float = 150.0
) -> float:
    """Soft score that ``box1`` is ``locality`` ``box2`` (official ``determine_position``).

    Also accepts the MILR GroundingDINO wrapper's aliases ('right of', 'left of', 'below',
    'top of'); T2I-CompBench's own relation words never hit them. 'on top of' (complex
    prompts) and unknown words score 0, as in the official code.
    """
    dx = (box2[0] + box2[2]) / 2 - (box1[0] + box1[2]) / 2
    dy = (box2[1] + box2[3]) / 2 - (box1[1] + box1[3]) / 2
    overlap = iou(box1, box2)
    directional = iou_threshold / overlap if overlap >= iou_threshold else 1.0
    if locality in ("next to", "on side of", "near"):
        if abs(dx) < distance_threshold or abs(dy) < distance_threshold:
            return 1.0
        return distance_threshold / max(abs(dx), abs(dy))
    if locality in ("on the right of", "right of"):
        return directional if dx < 0 and abs(dx) > abs(dy) else 0.0
    if locality in ("on the left of", "left of"):
        return directional if dx > 0 and abs(dx) > abs(dy) else 0.0
    if locality in ("on the bottom of", "below"):
        return directional if dy < 0 and abs(dy) > abs(dx) else 0.0
    if locality in ("on the top of", "top of"):
        return directional if dy > 0 and abs(dy) > abs(dx) else 0.0
    return 0.0


def official_frame_size(width: int, height: int, size: int = OFFICIAL_FRAME[0], max_size: int = OFFICIAL_FRAME[1]) -> tuple[int, int]:
    """``(w, h)`` after torchvision ``Resize(size, max_size)``: short side -> 479, long side <= 480."""
    short, long = min(width, height), max(width, height)
    new_short, new_long = size, int(size * long / short)
    if new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_short, new_long) if width <= height else (new_long, new_short)


def to_official_frame(box: Box, width: int, height: int) -> Box:
    """A pixel box of a ``width x height`` image in the official 479-px detector frame.

    The 150-px distance of ``determine_position`` is measured there, so a 384-px Janus image
    must be scaled up (equivalently, the threshold becomes 150 * 384 / 479 px).
    """
    frame_w, frame_h = official_frame_size(width, height)
    sx, sy = frame_w / width, frame_h / height
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)


def spatial_objects(prompt: str) -> tuple[str, str]:
    """Simple 2D/3D prompts: obj1 = first NOUN, obj2 = last NOUN."""
    found = nouns(prompt)
    if not found:
        raise ValueError(f"no noun found in spatial prompt {prompt!r}")
    return found[0], found[-1]


def relation_in(prompt: str, vocabulary: Sequence[str]) -> Optional[str]:
    """The first relation of ``vocabulary`` that is a substring of ``prompt`` (official order)."""
    return next((word for word in vocabulary if word in prompt), None)


def complex_spatial_objects(prompt: str) -> Optional[tuple[str, str]]:
    """Complex prompts: the nearest NOUN/PROPN before and NOUN after each preposition of
    ``COMPLEX_PREPOSITIONS``; ``None`` unless exactly two objects result (score 0)."""
    toks = tokens(prompt)
    objects: list[str] = []
    for i in range(len(toks)):
        k = next((n for n in (3, 2, 1) if _span_text(toks[i : i + n]) in COMPLEX_PREPOSITIONS), None)
        if k is None:
            continue
        before = next((t.text for t in reversed(toks[:i]) if t.pos in ("NOUN", "PROPN")), None)
        if before is not None:
            objects.append(before)
        after = next((t.text for t in toks[i + k :] if t.pos == "NOUN"), None)
        if after is None:
            after = next(
                (t.text for t, nxt in zip(toks[i + k :], toks[i + k + 1 :]) if t.pos == "PROPN" and nxt.pos != "PROPN"),
                None,
            )
        if after is not None:
            objects.append(after)
    return (objects[0], objects[1]) if len(objects) == 2 else None


def _span_text(span: list[Token]) -> str:
    return " ".join(t.text for t in span)


def combine_detection_score(score1: Optional[float], score2: Optional[float], position: float, zero_below: Optional[float]) -> float:
    """``0.25 s1 + 0.25 s2 + 0.5 pos`` (both found), ``0.25 s_i`` (one), 0 (none); then
    scores below ``zero_below`` become 0 (2D spatial: 0.5; 3D: no zeroing)."""
    if score1 is not None and score2 is not None:
        score = 0.25 * score1 + 0.25 * score2 + position / 2
    elif score1 is not None:
        score = 0.25 * score1
    elif score2 is not None:
        score = 0.25 * score2
    else:
        score = 0.0
    return 0.0 if zero_below is not None and score < zero_below else score


# --------------------------------------------------------------------------- 3D spatial
def mean_depth(depth: np.ndarray, box: Box, transposed: bool = True) -> float:
    """Mean depth inside ``box``; ``transposed`` replicates the official ``depth[x1:x2, y1:y2]``
    indexing (rows by x). An empty region is ``nan``, which makes every comparison fail."""
    x1, y1, x2, y2 = (int(v) for v in box)
    region = depth[x1:x2, y1:y2] if transposed else depth[y1:y2, x1:x2]
    return float(region.mean()) if region.size else float("nan")


def depth_position(
    locality: Optional[str], box1: Box, box2: Box, depth: np.ndarray, iou_threshold: float = 0.5, transposed: bool = True
) -> float:
    """Official 3D rule on relative inverse depth (bigger = nearer): 'in front of' needs
    obj1 nearer, 'behind'/'hidden' farther; IoU > 0.5 -> 1, 0 < IoU < 0.5 -> IoU / 0.5."""
    if locality == "in front of":
        sign = 1.0
    elif locality in ("behind", "hidden"):
        sign = -1.0
    else:
        return 0.0
    diff = sign * (mean_depth(depth, box1, transposed) - mean_depth(depth, box2, transposed))
    overlap = iou(box1, box2)
    if not diff > 0:
        return 0.0
    if overlap > iou_threshold:
        return 1.0
    if 0 < overlap < iou_threshold:
        return overlap / iou_threshold
    return 0.0


# --------------------------------------------------------------------------- numeracy
def read_object_names(path: str | Path) -> list[tuple[str, str]]:
    """``new_objects.txt``: "singular - plural" per line, lowercased."""
    pairs = []
    for line in Path(path).read_text(encoding="utf-8-sig").splitlines():
        if line.strip():
            singular, plural = line.split(" - ")
            pairs.append((singular.strip().lower(), plural.strip().lower()))
    return pairs


def parse_numeracy(prompt: str, objects: Sequence[tuple[str, str]]) -> list[tuple[str, int]]:
    """``(singular object, count)`` for every number word followed by a known (1- or 2-word)
    object, as the official parser (number words case-sensitive, a/an/one -> 1).

    Where the official code would crash or misalign counts (a singular noun after a number
    > 1, "a"/"an" before a plural) the word is kept as written and the count taken from the
    number word.
    """
    singular = [s for s, _ in objects]
    plural = [p for _, p in objects]
    words = [t.text for t in tokens(prompt)]
    found: list[tuple[str, int]] = []
    for i, word in enumerate(words):
        if word not in NUMBER_WORDS:
            continue
        two = f"{words[i + 1]} {words[i + 2]}" if i < len(words) - 2 else None
        one = words[i + 1] if i + 1 < len(words) else None
        if two is not None and (two in singular or two in plural):
            if two in plural and word not in ("a", "an", "one"):
                found.append((singular[plural.index(two)], NUMBER_WORDS[word]))
            else:
                found.append((two, 1))
        elif one is not None and (one in singular or one in plural):
            if one in singular and word in ("a", "an", "one"):
                found.append((one, 1))
            else:
                found.append((singular[plural.index(one)] if one in plural else one, NUMBER_WORDS[word]))
    return found


def is_duplicate(box1: Box, box2: Box) -> bool:
    """Official numeracy de-dup test (+1-pixel areas): IoU > 0.9 or either box > 90 % covered."""
    inter_w = max(0.0, min(box1[2], box2[2]) - max(box1[0], box2[0]) + 1)
    inter = inter_w * max(0.0, min(box1[3], box2[3]) - max(box1[1], box2[1]) + 1)
    area1 = (box1[2] - box1[0] + 1) * (box1[3] - box1[1] + 1)
    area2 = (box2[2] - box2[0] + 1) * (box2[3] - box2[1] + 1)
    return inter / (area1 + area2 - inter) > 0.9 or inter / area1 > 0.9 or inter / area2 > 0.9


def deduplicate(boxes: Sequence[Box]) -> list[Box]:
    """Keep each box unless it duplicates an already kept one (input in confidence order)."""
    kept: list[Box] = []
    for box in boxes:
        if not any(is_duplicate(box, other) for other in kept):
            kept.append(box)
    return kept


def numeracy_score(targets: Sequence[tuple[str, int]], counts: dict[str, int]) -> float:
    """``Σ_objects (0.5·[present] + 0.5·[count matches]) / #objects``."""
    if not targets:
        raise ValueError("numeracy prompt without any '<number> <object>' to count")
    weight = 1.0 / len(targets)
    score = 0.0
    for name, target in targets:
        found = counts.get(name, 0)
        if found > 0:
            score += 0.5 * weight + (0.5 * weight if found == target else 0.0)
    return score


# --------------------------------------------------------------------------- complex (3-in-1)
def complex_key(prompt: str) -> str:
    """How 3_in_1.py matches prompts to its sub-lists: lowercase text before the first '.'."""
    return prompt.strip().split(".")[0].lower()


def read_complex_lists(data_dir: str | Path) -> tuple[frozenset[str], frozenset[str]]:
    """The keys of ``complex_val_spatial.txt`` and ``complex_val_action.txt`` in ``data_dir``."""
    data_dir = Path(data_dir)
    lists = []
    for name in ("complex_val_spatial.txt", "complex_val_action.txt"):
        path = data_dir / name
        if not path.is_file():
            raise FileNotFoundError(
                f"T2I-CompBench complex category needs {name} in data_dir={str(data_dir)!r} (the official "
                "examples/dataset/ files; milr bundles them in data/benchmarks/t2i_compbench/)"
            )
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        lists.append(frozenset(complex_key(line) for line in lines if line.strip()))
    return lists[0], lists[1]


def complex_kind(prompt: str, spatial: frozenset[str], action: frozenset[str]) -> ComplexKind:
    """Which sub-list a complex prompt belongs to; anything else counts as spatial+action."""
    key = complex_key(prompt)
    if key in spatial:
        return "spatial"
    if key in action:
        return "action"
    return "spatialaction"


def three_in_one(kind: ComplexKind, attribute: float, spatial: float, action: float) -> float:
    """(attribute + spatial)/2, (attribute + action)/2, or the mean of all three."""
    if kind == "spatial":
        return (attribute + spatial) / 2
    if kind == "action":
        return (attribute + action) / 2
    return (attribute + spatial + action) / 3
