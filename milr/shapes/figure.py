"""A picture of a run: ``python -m milr.shapes.figure RUN_DIR OUT.png``.

One row per prompt: the prompt, the initial and the selected image (upscaled ×4, nearest
neighbour, so every pixel the model drew stays visible) with their rewards, and the think text
before and after. The README's first screen is this picture of the demo run.
"""

from __future__ import annotations

import argparse
import io
import textwrap
from pathlib import Path
from typing import Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

from milr.files import atomic_write
from milr.results.runs import read_run

SCALE = 4
PAD = 8
TEXT_WIDTH = 420
WRAP = 64


def _reward(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def figure(run_dir: str | Path) -> Image.Image:
    """The run's rows as one RGB image (repeat 0 of every prompt, in run-folder order)."""
    run = read_run(run_dir)
    font = ImageFont.load_default()
    side = 64 * SCALE
    row_height = side + 3 * PAD + 12
    width = PAD + 2 * (side + PAD) + TEXT_WIDTH
    canvas = Image.new("RGB", (width, max(1, len(run.prompts)) * row_height + PAD), "white")
    draw = ImageDraw.Draw(canvas)
    for i, prompt in enumerate(run.prompts):
        repeat = prompt.repeats[0]
        top = PAD + i * row_height
        images = [(repeat.initial, f"initial  {_reward(repeat.initial_reward)}"), (repeat.sample, f"selected  {_reward(repeat.selected_reward)}")]
        for j, (path, label) in enumerate(images):
            left = PAD + j * (side + PAD)
            if path is not None:
                canvas.paste(Image.open(path).convert("RGB").resize((side, side), Image.NEAREST), (left, top + 14))
            draw.text((left, top), label, fill="black", font=font)
        left = PAD + 2 * (side + PAD)
        lines = [f"prompt: {prompt.text}", "", "think before:", *textwrap.wrap(repeat.initial_text or "", WRAP), "", "think after:", *textwrap.wrap(repeat.text or "", WRAP)]
        draw.multiline_text((left, top + 14), "\n".join(lines), fill="black", font=font, spacing=4)
    return canvas


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m milr.shapes.figure", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path, help="the PNG to write")
    args = parser.parse_args(argv)
    buffer = io.BytesIO()
    figure(args.run_dir).save(buffer, format="PNG")
    atomic_write(args.out, buffer.getvalue())


if __name__ == "__main__":
    main()
