"""Shapes prompts in GenEval's schema, and the plans and scenes that satisfy them.

A prompt is an ``evaluation_metadata.jsonl`` line (``tag``, ``include``, optional ``exclude``,
``prompt``) over the four shapes and six colours, for GenEval's six tags plus ``knowledge``
(the shape or its colour named indirectly, resolved in ``include``; reported apart from the
GenEval mean). A *plan* is the think text the model is taught to write: every object's cell,
colour and shape in reading order, e.g. ``"red circle at a1. blue square at b2. red circle at d3."``. ``scene`` samples objects that satisfy a prompt, ``plan_text`` /
``parse_plan`` turn objects into words and back.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any, Sequence

from milr.shapes.world import COLORS, GRID, SHAPES, Obj, check_scene

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr", "knowledge")
GENEVAL_TAGS = TAGS[:6]
RELATIONS = ("left of", "right of", "above", "below")
NUMBERS = ("zero", "one", "two", "three", "four")
COLS = ("a", "b", "c", "d")  # cell names: column letter, row number (see cell_name)
ROWS = ("1", "2", "3", "4")

#: knowledge: the indirect names and what they resolve to
SHAPE_RIDDLES = {
    "square": "the shape with four equal sides",
    "circle": "the shape with no corners",
    "triangle": "the shape with three corners",
    "cross": "the shape of a plus sign",
}
COLOR_RIDDLES = {
    "red": "a ripe strawberry",
    "orange": "a carrot",
    "yellow": "a lemon",
    "green": "grass",
    "blue": "the sky",
    "purple": "lavender",
}


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def make_prompt(tag: str, rng: random.Random) -> dict[str, Any]:
    """One GenEval-schema metadata line of ``tag``, drawn with ``rng``."""
    s1, s2 = rng.sample(SHAPES, 2)
    c1, c2 = rng.sample(COLORS, 2)
    if tag == "single_object":
        return {"tag": tag, "include": [{"class": s1, "count": 1}], "prompt": f"a photo of {_article(s1)} {s1}"}
    if tag == "two_object":
        return {"tag": tag, "include": [{"class": s1, "count": 1}, {"class": s2, "count": 1}],
                "prompt": f"a photo of {_article(s1)} {s1} and {_article(s2)} {s2}"}
    if tag == "counting":
        n = rng.randint(2, 4)
        return {"tag": tag, "include": [{"class": s1, "count": n}], "exclude": [{"class": s1, "count": n + 1}],
                "prompt": f"a photo of {NUMBERS[n]} {plural(s1)}"}
    if tag == "colors":
        return {"tag": tag, "include": [{"class": s1, "count": 1, "color": c1}], "prompt": f"a photo of {_article(c1)} {c1} {s1}"}
    if tag == "position":
        relation = rng.choice(RELATIONS)
        return {"tag": tag, "include": [{"class": s2, "count": 1}, {"class": s1, "count": 1, "position": [relation, 0]}],
                "prompt": f"a photo of {_article(s1)} {s1} {relation} {_article(s2)} {s2}"}
    if tag == "color_attr":
        return {"tag": tag, "include": [{"class": s1, "count": 1, "color": c1}, {"class": s2, "count": 1, "color": c2}],
                "prompt": f"a photo of {_article(c1)} {c1} {s1} and {_article(c2)} {c2} {s2}"}
    if tag == "knowledge":
        form = rng.randrange(3)
        clause: dict[str, Any] = {"class": s1, "count": 1}
        if form == 0:
            text = f"a photo of {SHAPE_RIDDLES[s1]}"
        else:
            clause["color"] = c1
            subject = f"{_article(s1)} {s1}" if form == 1 else SHAPE_RIDDLES[s1]
            text = f"a photo of {subject} the colour of {COLOR_RIDDLES[c1]}"
        return {"tag": tag, "include": [clause], "prompt": text}
    raise ValueError(f"unknown Shapes tag {tag!r}; one of {TAGS}")


def evaluation_set(per_tag: int = 80, seed: int = 0) -> list[dict[str, Any]]:
    """The fixed evaluation set: ``per_tag`` prompts of each tag, in tag order, from ``seed``."""
    rng = random.Random(seed)
    return [make_prompt(tag, rng) for tag in TAGS for _ in range(per_tag)]


def dumps(metadata: dict[str, Any]) -> str:
    """A metadata line as GenEval writes it (key order kept, no spaces dropped)."""
    return json.dumps(metadata)


# ---------------------------------------------------------------------------- scenes


def _relation_holds(a: tuple[int, int], b: tuple[int, int], relation: str) -> bool:
    """Cells for which GenEval's ``relative_position`` of A to B (12-px boxes in 16-px cells,
    margin 0.1) surely reports ``relation``: the offset along the relation's axis is non-zero,
    in its direction, and at least as large as the other (checked against the exact rule in the
    tests)."""
    dc, dr = a[0] - b[0], a[1] - b[1]
    along, across = {"left of": (-dc, dr), "right of": (dc, dr), "above": (-dr, dc), "below": (dr, dc)}[relation]
    return along > 0 and abs(across) <= along


def scene(metadata: dict[str, Any], rng: random.Random) -> list[Obj]:
    """Objects that satisfy ``metadata``: the included objects only, free colours and cells drawn
    with ``rng`` (a counting prompt's objects share one colour)."""
    cells = [(c, r) for r in range(GRID) for c in range(GRID)]
    while True:
        taken = rng.sample(cells, sum(req["count"] for req in metadata["include"]))
        objects: list[Obj] = []
        for req in metadata["include"]:
            color = req.get("color") or rng.choice(COLORS)
            objects.extend(Obj(taken.pop(), color, req["class"]) for _ in range(req["count"]))
            if "position" in req:
                relation, group = req["position"]
                anchor = objects[sum(r["count"] for r in metadata["include"][:group])]
                if not _relation_holds(objects[-1].cell, anchor.cell, relation):
                    break
        else:
            return objects


# ---------------------------------------------------------------------------- plans


def cell_name(cell: tuple[int, int]) -> str:
    """A cell as one word: column letter ``a``-``d`` (left to right), row number ``1``-``4`` (top to
    bottom): ``(1, 2)`` is ``b3``."""
    return f"{COLS[cell[0]]}{ROWS[cell[1]]}"


def clause(obj: Obj) -> str:
    """One object of a plan: ``"red circle at a1."``."""
    return f"{obj.color} {obj.shape} at {cell_name(obj.cell)}."


def plan_text(objects: Sequence[Obj]) -> str:
    """The plan of a scene: one clause per object in reading order (the order Janus draws image
    tokens in): ``"red circle at a1. blue square at b2. red circle at d3."``."""
    return " ".join(clause(o) for o in sorted(objects, key=lambda o: (o.cell[1], o.cell[0])))


_CLAUSE = re.compile(r"(\w+) (\w+) at ([a-d])([1-4])\.")


def parse_plan(text: str) -> list[Obj] | None:
    """The objects a plan describes, or None when it is not a well-formed plan (unknown words,
    text between clauses, two objects in one cell)."""
    text = text.strip()
    objects: list[Obj] = []
    end = 0
    for match in _CLAUSE.finditer(text):
        if text[end : match.start()].strip():
            return None
        end = match.end()
        color, shape, col, row = match.groups()
        if color not in COLORS or shape not in SHAPES:
            return None
        objects.append(Obj((COLS.index(col), ROWS.index(row)), color, shape))
    if not objects or text[end:].strip():
        return None
    try:
        check_scene(objects)
    except ValueError:
        return None
    return objects


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m milr.shapes.prompts --write PATH``: write the evaluation set as GenEval's
    ``evaluation_metadata.jsonl`` (the shipped ``data/benchmarks/shapes_geneval`` file is this,
    with the defaults)."""
    import argparse
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m milr.shapes.prompts", description=main.__doc__)
    parser.add_argument("--write", required=True, type=Path, help="the evaluation_metadata.jsonl to write")
    parser.add_argument("--per_tag", type=int, default=80, help="prompts per tag")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.write.parent.mkdir(parents=True, exist_ok=True)
    args.write.write_text("".join(dumps(m) + "\n" for m in evaluation_set(args.per_tag, args.seed)))


if __name__ == "__main__":
    main()
