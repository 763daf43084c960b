"""The Shapes detector: GenEval judged exactly on Shapes images, with no weights.

GenEval's own rules (``rewards.geneval_rules``) judge ``Detection`` records; on Shapes the
detector and the colour classifier are replaced by reading the pixels, which the world
(``milr.shapes.world``) fixes exactly. Registry name ``shapes_geneval``: 1.0 for a correct
image, else 0.0, as GenEval; ``soft: true`` scores the share of satisfied clauses instead.

How an image is read (``read``), so that imperfect model images get a definite reading:

1. **Size.** 64 × 64 px; a square image whose side is a multiple of 64 is downscaled by taking
   the centre pixel of each block (nearest neighbour); any other size is an error.
2. **Colour.** Every pixel becomes the nearest (Euclidean RGB) of the six palette colours or
   the white background.
3. **Pieces.** Connected regions (4-neighbourhood) of one colour; a region under
   ``MIN_PIXELS`` px is a stray speck and is dropped (its pixels read as background).
4. **Objects.** A piece belongs to the cell holding the centre of its pixel box; all pieces of
   one cell form one object, at most one per cell as in the world. So a shape broken by noise
   stays one object, and a shape drawn across a cell border belongs to the cell of its centre.
5. **Colour of an object.** The colour with the most pixels (ties: palette order); the share of
   the object's pixels in that colour is its *purity*, so a cell painted in two colours is read as
   its majority colour at a lowered score.
6. **Shape.** Each template of ``world.MASKS`` is laid over the object with the centres of the
   two pixel boxes aligned (± 1 px). Its match is IoU² × span ratio, the span ratio being
   (shorter / longer height) × (shorter / longer width), heights and widths counted in rows and
   columns holding at least 2 of the pixels (a stray pixel stuck to a shape does not widen it).
   The shape is the template of best match (ties: ``SHAPES`` order). The span ratio keeps a
   small piece from fitting inside a larger template (half a square inside the circle).
7. **Score** = match × purity, in [0, 1]: 1.0 for a rendered shape. GenEval's thresholds then act
   as on detector confidence: an object counts when its score is above 0.3, and for counting
   prompts above 0.9 (a pure object of the right size with IoU above 0.95). Measured on every
   shape drawn with quadrant tokens missing: one or two of its four quadrants score at most
   0.25 (not an object), three read as the right shape at 0.56 (0.63 for a triangle without an
   apex quadrant; without a base quadrant, 0.19-0.27, it is not seen).
   The ``Detection`` box is the object's pixel box ``(x1, y1, x2, y2)``, corners inclusive; its
   colour is the object's colour.

``detect(image)`` gives the objects seen (score above 0.3) as ``world.Obj``; comparing them with
``prompts.parse_plan`` of the think text measures plan-image agreement.

``python -m rewards.shapes RUN_DIR`` scores a run folder: per tag the accuracy of the selected
and of the initial images, plan accuracy (does the think text's plan, rendered exactly, satisfy
the prompt) and plan-image agreement, the GenEval mean over the six GenEval tags with
``knowledge`` apart; it writes ``RUN_DIR/official/shapes_geneval.json`` for ``milr.report``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from data.prompt import Prompt
from milr.results.runs import PromptRun, Repeat, Run, read_run
from milr.shapes.prompts import GENEVAL_TAGS, TAGS, parse_plan
from milr.shapes.world import BACKGROUND, CANVAS, CELL, COLORS, GRID, MASKS, PALETTE, SHAPES, Obj, render
from rewards.base import Reward, RewardOutput, register
from rewards.geneval_rules import Detection, Rules, Verdict, check, select
from rewards.run_scores import ImageScore, OfficialScore, group_means, prompt_of, samples, score_batches

#: a one-colour region smaller than this is a speck, not part of an object (the smallest
#: quadrant of a shape, the triangle's apex half, has 9 px; whole shapes have 72-144 px)
MIN_PIXELS = 8
#: an object ``detect`` reports scores above this: GenEval's detection threshold
DETECT_SCORE = Rules().threshold

_COLOURS = np.array([PALETTE[c] for c in COLORS] + [BACKGROUND], np.float32)  # index len(COLORS) = background
_SHIFTS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


@dataclass(frozen=True)
class Seen:
    """One object read from an image: what it is, its pixel box (inclusive) and its score."""

    obj: Obj
    box: tuple[int, int, int, int]
    score: float
    pixels: int

    def to_json(self) -> dict[str, Any]:
        return {"cell": list(self.obj.cell), "color": self.obj.color, "shape": self.obj.shape,
                "box": list(self.box), "score": round(self.score, 4), "pixels": self.pixels}


def pixels(image: Image.Image | np.ndarray) -> np.ndarray:
    """``[64, 64, 3]`` uint8 RGB of a PIL image or an ``[H, W, 3]`` array, downscaled by the
    centre pixel of each block when the side is a multiple of 64."""
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    height, width = array.shape[:2]
    if array.ndim != 3 or array.shape[2] != 3 or height != width or height % CANVAS:
        raise ValueError(
            f"a Shapes image is {CANVAS} × {CANVAS} RGB (or square with a side that is a multiple of {CANVAS}), "
            f"got shape {tuple(array.shape)}"
        )
    k = height // CANVAS
    return array[k // 2 :: k, k // 2 :: k]


def quantise(rgb: np.ndarray) -> np.ndarray:
    """``[64, 64]`` colour index per pixel: ``COLORS`` position, or ``len(COLORS)`` for white."""
    dist = ((rgb.astype(np.float32)[:, :, None, :] - _COLOURS) ** 2).sum(-1)
    return dist.argmin(-1)


def _span(mask: np.ndarray) -> np.ndarray:
    """Height and width of an object, counting the rows and columns that hold at least 2 of its
    pixels (so a stray pixel stuck to a shape does not enlarge it)."""
    return np.array([(mask.sum(1) >= 2).sum(), (mask.sum(0) >= 2).sum()])


def _match(mask: np.ndarray) -> tuple[str, float]:
    """The best template for ``mask`` (a cropped boolean object) and its match: IoU² × span ratio,
    IoU with the pixel-box centres aligned ± 1 px."""
    best = ("", -1.0)
    for shape in SHAPES:
        template = _TEMPLATES[shape]
        size = (max(mask.shape[0], template.shape[0]) + 4, max(mask.shape[1], template.shape[1]) + 4)
        placed = _place(mask, size)
        spans = np.stack([_span(mask), _SPANS[shape]])
        ratio = float(np.prod(spans.min(0) / np.maximum(spans.max(0), 1)))
        for dy, dx in _SHIFTS:
            other = _place(template, size, dy, dx)
            match = ((placed & other).sum() / (placed | other).sum()) ** 2 * ratio
            if match > best[1]:
                best = (shape, float(match))
    return best


def _place(mask: np.ndarray, size: tuple[int, int], dy: int = 0, dx: int = 0) -> np.ndarray:
    """``mask`` centred on a blank ``size`` canvas, moved by ``(dy, dx)``."""
    canvas = np.zeros(size, bool)
    y, x = (size[0] - mask.shape[0]) // 2 + dy, (size[1] - mask.shape[1]) // 2 + dx
    canvas[y : y + mask.shape[0], x : x + mask.shape[1]] = mask
    return canvas


def _crop(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


_TEMPLATES = {shape: _crop(mask) for shape, mask in MASKS.items()}
_SPANS = {shape: _span(mask) for shape, mask in MASKS.items()}


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))


def read(image: Image.Image | np.ndarray) -> list[Seen]:
    """Every object in the image by the decision rules of the module docstring, in reading order of cells."""
    colour = quantise(pixels(image))
    cells: dict[tuple[int, int], np.ndarray] = {}  # cell -> [64, 64] colour index of its pieces, -1 elsewhere
    for index in range(len(COLORS)):
        labels, _ = ndimage.label(colour == index)
        sizes = np.bincount(labels.ravel())
        for label in np.flatnonzero(sizes[1:] >= MIN_PIXELS) + 1:
            piece = labels == label
            x1, y1, x2, y2 = _box(piece)
            cell = (min(int((x1 + x2) / 2 // CELL), GRID - 1), min(int((y1 + y2) / 2 // CELL), GRID - 1))
            owned = cells.setdefault(cell, np.full(colour.shape, -1))
            owned[piece] = index
    seen = []
    for cell in sorted(cells, key=lambda c: (c[1], c[0])):
        owned = cells[cell]
        mask = owned >= 0
        counts = np.bincount(owned[mask], minlength=len(COLORS))
        shape, match = _match(_crop(mask))
        purity = counts.max() / mask.sum()
        seen.append(Seen(Obj(cell, COLORS[int(counts.argmax())], shape), _box(mask), float(match * purity), int(mask.sum())))
    return seen


def detect(image: Image.Image | np.ndarray, min_score: float = DETECT_SCORE) -> list[Obj]:
    """The objects seen in the image: those scoring above ``min_score`` (GenEval's threshold)."""
    return [s.obj for s in read(image) if s.score > min_score]


def detections(seen: Sequence[Seen]) -> dict[str, list[Detection]]:
    """The objects as GenEval detections by class: pixel box, score, colour."""
    found: dict[str, list[Detection]] = {}
    for s in seen:
        found.setdefault(s.obj.shape, []).append(Detection(box=s.box, score=s.score, color=s.obj.color))
    return found


def verdict(metadata: dict[str, Any], seen: Sequence[Seen], rules: Rules = Rules()) -> Verdict:
    """GenEval's verdict on the objects read from an image."""
    return check(metadata, select(metadata, detections(seen), rules), rules)


def plan_correct(metadata: dict[str, Any], text: str) -> bool:
    """Does the plan in ``text``, rendered exactly, satisfy the prompt? A malformed plan does not."""
    objects = parse_plan(text)
    return objects is not None and verdict(metadata, read(render(objects))).correct


def plan_agrees(seen: Sequence[Sequence[Any]], text: str) -> bool:
    """Does an image show exactly its own plan? ``seen`` = the details' ``seen`` list
    (``[col, row, colour, shape]`` of the detected objects); a malformed plan never agrees."""
    planned = parse_plan(text)
    return planned is not None and set(planned) == {Obj((c, r), color, shape) for c, r, color, shape in seen}


def _metadata(prompt: Prompt) -> dict[str, Any]:
    meta = prompt.metadata
    if "tag" not in meta or "include" not in meta:
        raise ValueError(f"prompt {prompt.index}: the Shapes reward needs a GenEval-schema metadata line (tag, include), got keys {sorted(meta)}")
    unknown = {r["class"] for r in meta["include"] + meta.get("exclude", [])} - set(SHAPES)
    if unknown:
        raise ValueError(f"prompt {prompt.index}: classes {sorted(unknown)} are not Shapes shapes {SHAPES}")
    return meta


@register("shapes_geneval")
class ShapesGenEvalReward(Reward):
    """GenEval on Shapes images, read exactly from the pixels (module docstring)."""

    def __init__(self, soft: bool = False) -> None:
        """
        Args:
            soft: score the share of satisfied include/exclude clauses instead of GenEval's 1.0 / 0.0.
        """
        self.soft = soft

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        scores, info = [], []
        for image, prompt in zip(images, prompts):
            meta = _metadata(prompt)
            seen = read(image)
            v = verdict(meta, seen)
            scores.append(v.fraction if self.soft else float(v.correct))
            info.append({
                "tag": meta["tag"],
                "correct": v.correct,
                "reason": v.reason,
                "fraction": v.fraction,
                "objects": [s.to_json() for s in seen],
                "seen": [[*s.obj.cell, s.obj.color, s.obj.shape] for s in seen if s.score > DETECT_SCORE],
            })
        return RewardOutput(scores=torch.tensor(scores, dtype=torch.float32), details=info)


# ---------------------------------------------------------------------------- run folders

#: what ``python -m rewards.shapes RUN_DIR`` measures per tag: GenEval's verdict on the selected
#: (official) and initial images; whether the plan of the selected / initial think text, rendered
#: exactly, satisfies the prompt; whether the selected / initial image shows exactly its own plan
MEASURES = ("selected", "initial", "plan", "initial plan", "agreement", "initial agreement")


def geneval_mean(groups: dict[str, dict[str, float]]) -> Optional[float]:
    """Unweighted mean over the GenEval tags present (``knowledge`` apart), as GenEval's overall score."""
    scores = [groups[t]["score"] for t in GENEVAL_TAGS if t in groups]
    return sum(scores) / len(scores) if scores else None


def _measures(prompt: PromptRun, repeat: Repeat, selected: dict[str, Any], initial: Optional[dict[str, Any]]) -> dict[str, Optional[bool]]:
    """One repeat's outcome per measure; ``None`` where the run did not record what it needs."""
    meta, text, initial_text = prompt.metadata, repeat.text, repeat.initial_text
    return {
        "selected": selected["correct"],
        "initial": None if initial is None else initial["correct"],
        "plan": None if text is None else plan_correct(meta, text),
        "initial plan": None if initial_text is None else plan_correct(meta, initial_text),
        "agreement": None if text is None else plan_agrees(selected["seen"], text),
        "initial agreement": None if initial is None or initial_text is None else plan_agrees(initial["seen"], initial_text),
    }


def evaluate_run(run: Run, batch_size: int = 64) -> OfficialScore:
    """Every measure of ``MEASURES`` per tag for a run folder; the official score is the selected images'."""
    reward = ShapesGenEvalReward()
    items = list(samples(run))

    def scored(path: Callable[[Repeat], Optional[Path]], description: str) -> dict[tuple[str, int], dict[str, Any]]:
        todo = [(p, r) for p, r in items if path(r) is not None]
        out = score_batches(reward, todo, lambda item: (path(item[1]), prompt_of(item[0])), batch_size, description)
        return {(p.key, r.index): details for (p, r), _, details in out}

    selected = scored(lambda r: r.sample, "Shapes: selected images")
    initial = scored(lambda r: r.initial, "Shapes: initial images")
    images: dict[str, list[ImageScore]] = {m: [] for m in MEASURES}
    for prompt, repeat in items:
        key = (prompt.key, repeat.index)
        for measure, value in _measures(prompt, repeat, selected[key], initial.get(key)).items():
            if value is not None:
                images[measure].append(ImageScore(prompt.key, repeat.index, prompt.metadata["tag"], float(value)))
    groups = {m: group_means(images[m], TAGS) for m in MEASURES}
    return OfficialScore(
        "shapes_geneval",
        "re-scored by the exact Shapes detector (rewards.shapes)",
        groups["selected"],
        geneval_mean(groups["selected"]),
        images["selected"],
        note="overall: mean over the six GenEval tags; knowledge apart",
        extra={m: {"groups": groups[m], "geneval_mean": geneval_mean(groups[m])} for m in MEASURES[1:]},
    )


def print_run(official: OfficialScore, console: Any = None) -> None:
    """Per tag the images and each measure's accuracy, then the GenEval mean of each measure."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    groups = {"selected": official.groups} | {m: official.extra[m]["groups"] for m in MEASURES[1:]}
    means = {"selected": official.overall} | {m: official.extra[m]["geneval_mean"] for m in MEASURES[1:]}
    table = Table("tag", "images", *MEASURES, title=f"shapes_geneval ({official.source})")
    number = lambda value: "n/a" if value is None else f"{value:.3f}"  # noqa: E731
    for tag, selected in official.groups.items():
        table.add_row(tag, str(selected["n"]), *(number(groups[m].get(tag, {}).get("score")) for m in MEASURES))
    table.add_row("GenEval mean", "", *(number(means[m]) for m in MEASURES), style="bold")
    console.print(table)
    knowledge = official.groups.get("knowledge", {}).get("score")
    console.print(f"GenEval mean (six GenEval tags): {number(official.overall)}; knowledge (apart): {number(knowledge)}")


def main(argv: Optional[Sequence[str]] = None) -> OfficialScore:
    """``python -m rewards.shapes RUN_DIR``: print the summary and write ``RUN_DIR/official/shapes_geneval.json``."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog="python -m rewards.shapes", description="Shapes GenEval of a run folder, with the exact detector.")
    parser.add_argument("run_dir", type=str, help="a run folder (RUN_DIR/<key>/result.json, samples/, initial/)")
    parser.add_argument("--batch_size", type=int, default=64, help="images per reward call")
    args = parser.parse_args(list(argv) if argv is not None else None)
    official = evaluate_run(read_run(args.run_dir), args.batch_size)
    official.write(Path(args.run_dir))
    print_run(official)
    return official


if __name__ == "__main__":
    main()
