"""The Shapes world, pixel-exact: a 64 × 64 white canvas, a 4 × 4 grid of 16-px cells, at most one
flat-coloured shape per cell, drawn in the cell's central 12 × 12 px.

Image tokens are 8 × 8 px patches, so a cell is 2 × 2 tokens and a token holds one quadrant of one
shape. The patch quantiser here is exact: a background patch at token position ``p`` (row-major,
0..63) is code ``p``, and code ``64 + (colour · 4 + shape) · 4 + quadrant`` is one quadrant of one
coloured shape (160 codes). Background codes carry their position because Janus generates image
tokens with nothing but 1-D rotary positions counted from a text prompt of varying length: a model
small enough to train on a CPU in half an hour did not learn *where* it was on the grid with a
single background code (sampled images put 8 % of object tokens in the right place after 72 k
training images); with position-carrying codes, the previous background token says where the next
token goes, and a model then learned where objects start (docs/shapes.md, training attempts). Every background code paints the same white patch, so the pixels, and
everything judged from them, are unchanged. Everything else in Shapes (the detector reward, the
training data) reads these constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

CANVAS = 64
CELL = 16
GRID = 4  # cells per side
MARGIN = 2  # white pixels around a shape inside its cell
SIZE = CELL - 2 * MARGIN  # 12: a shape's box
TOKEN = 8  # pixels per image-token side
TOKENS = CANVAS // TOKEN  # 8 tokens per side, 64 in all
BACKGROUND = (255, 255, 255)

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (235, 205, 25),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "purple": (140, 50, 180),
}
COLORS = tuple(PALETTE)
SHAPES = ("square", "circle", "triangle", "cross")
BACKGROUND_CODES = TOKENS * TOKENS  # 64: one per token position
CODES = BACKGROUND_CODES + len(COLORS) * len(SHAPES) * 4  # 160


def _masks() -> dict[str, np.ndarray]:
    centre = (np.arange(SIZE) + 0.5)  # pixel centres in the 12 × 12 box
    x, y = np.meshgrid(centre, centre)
    half = SIZE / 2
    # triangle: apex at the top centre, base on the bottom row; a pixel is in when its centre is
    # inside the isosceles triangle (0, 12), (6, 0), (12, 12)
    within = np.abs(x - half) <= half * y / SIZE
    bar = np.abs(centre - half) <= 2  # 4 px wide, centred
    return {
        "square": np.ones((SIZE, SIZE), bool),
        "circle": (x - half) ** 2 + (y - half) ** 2 <= (half) ** 2,
        "triangle": within,
        "cross": bar[None, :] | bar[:, None],
    }


#: ``MASKS[shape]``: the shape's 12 × 12 boolean template
MASKS = _masks()


@dataclass(frozen=True, order=True)
class Obj:
    """One object: its cell ``(col, row)`` (col 0 = left, row 0 = top), colour and shape."""

    cell: tuple[int, int]
    color: str
    shape: str

    def __post_init__(self) -> None:
        if self.color not in PALETTE or self.shape not in SHAPES:
            raise ValueError(f"unknown object {self.color} {self.shape}")
        if not all(0 <= v < GRID for v in self.cell):
            raise ValueError(f"cell {self.cell} is outside the {GRID} × {GRID} grid")

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Pixel box ``(x1, y1, x2, y2)`` of the shape's 12 × 12 area (inclusive corners)."""
        x, y = self.cell[0] * CELL + MARGIN, self.cell[1] * CELL + MARGIN
        return (x, y, x + SIZE - 1, y + SIZE - 1)


def check_scene(objects: Sequence[Obj]) -> None:
    cells = [o.cell for o in objects]
    if len(set(cells)) != len(cells):
        raise ValueError(f"two objects share a cell: {sorted(cells)}")


def render(objects: Iterable[Obj]) -> np.ndarray:
    """The scene as ``[64, 64, 3]`` uint8 RGB pixels."""
    objects = list(objects)
    check_scene(objects)
    image = np.full((CANVAS, CANVAS, 3), BACKGROUND, np.uint8)
    for o in objects:
        x1, y1, _, _ = o.box
        patch = image[y1 : y1 + SIZE, x1 : x1 + SIZE]
        patch[MASKS[o.shape]] = PALETTE[o.color]
    return image


def code(color: str, shape: str, quadrant: int) -> int:
    """Image-token code of one quadrant (0 top left, 1 top right, 2 bottom left, 3 bottom right)."""
    return BACKGROUND_CODES + (COLORS.index(color) * len(SHAPES) + SHAPES.index(shape)) * 4 + quadrant


def tokens(objects: Iterable[Obj]) -> np.ndarray:
    """The scene's ``[8, 8]`` image-token grid (row-major, as Janus generates them)."""
    objects = list(objects)
    check_scene(objects)
    grid = np.arange(TOKENS * TOKENS, dtype=np.int64).reshape(TOKENS, TOKENS)  # background codes
    for o in objects:
        col, row = o.cell
        for q in range(4):
            grid[2 * row + q // 2, 2 * col + q % 2] = code(o.color, o.shape, q)
    return grid


def codebook() -> np.ndarray:
    """``[CODES, 8, 8, 3]`` uint8: the exact pixels of every code's patch (every background code
    paints white)."""
    patches = np.full((CODES, TOKEN, TOKEN, 3), BACKGROUND, np.uint8)
    for color in COLORS:
        for shape in SHAPES:
            cell = render([Obj((0, 0), color, shape)])[:CELL, :CELL]
            for q in range(4):
                r, c = q // 2, q % 2
                patches[code(color, shape, q)] = cell[r * TOKEN : (r + 1) * TOKEN, c * TOKEN : (c + 1) * TOKEN]
    return patches


def paint(grid: np.ndarray) -> np.ndarray:
    """Pixels of a token grid through the exact codebook (what a perfect VQ decoder draws);
    codes outside the codebook's range are an error."""
    grid = np.asarray(grid)
    if grid.min() < 0 or grid.max() >= CODES:
        raise ValueError(f"codes must lie in [0, {CODES}), got {grid.min()}..{grid.max()}")
    patches = codebook()[grid]  # [8, 8, 8, 8, 3]
    return patches.transpose(0, 2, 1, 3, 4).reshape(CANVAS, CANVAS, 3)
