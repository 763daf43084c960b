"""The Shapes model card, written from measurements: ``python -m milr.shapes.card CHECKPOINT RUN_DIR``.

Reads what the training command recorded (``CHECKPOINT/training.json``) and what the exact
detector measured on a ``--model.method base`` run of the whole evaluation set
(``RUN_DIR/official/shapes_geneval.json``, from ``python -m rewards.shapes RUN_DIR``), and writes
``CHECKPOINT/README.md``. No figure in the card is typed by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

from milr.files import atomic_write
from milr.shapes.prompts import GENEVAL_TAGS, TAGS
from milr.shapes.world import CODES

MEASURES = (("initial", "image accuracy"), ("initial plan", "plan accuracy"), ("initial agreement", "plan-image agreement"))


def _row(name: str, groups: dict[str, dict[str, float]], mean: float | None) -> str:
    cells = [f"{groups[t]['score']:.3f}" if t in groups else "n/a" for t in TAGS]
    return f"| {name} | " + " | ".join(cells) + f" | {'n/a' if mean is None else f'{mean:.3f}'} |"


def card(training: dict[str, Any], official: dict[str, Any], run_command: str) -> str:
    cfg = training["config"]
    extra = official["extra"]
    header = "| measure | " + " | ".join(f"`{t}`" for t in TAGS) + " | GenEval mean (6 tags) |"
    rows = [_row(label, extra[key]["groups"], extra[key]["geneval_mean"]) for key, label in MEASURES]
    seen = training["sequences"]
    losses = ", ".join(f"{k} {v}" for k, v in training["final_losses"].items())
    n = sum(g["n"] for g in extra["initial"]["groups"].values())
    return f"""# Shapes Janus (milr)

A `JanusForConditionalGeneration` (Llama text model, {cfg['layers']} layers, hidden {cfg['hidden']},
{cfg['heads']} heads; VQ decoder 8 × 8 tokens → 64 px over the Shapes world's {CODES} exact patch codes)
trained on the Shapes world (docs/shapes.md) for both turns of milr's pipeline: the think prompt → a
plan that fixes every object's colour, shape and cell, and `"{{prompt}}. {{plan}}"` → 64 image tokens
that follow the plan (condition dropout {cfg['uncond']} for classifier-free guidance). The SigLIP
tower and the VQ encoder are untrained: MILR never uses them. Load it with
`--model.backbone.name_or_path shapes` (`JanusForConditionalGeneration.from_pretrained` of this folder).

## Training

- Command: `python -m milr.shapes.train --out milr/shapes/checkpoint` (seed {cfg['seed']}, every
  setting in `training.json`), Lightning on the CPU.
- {training['steps']} steps in {training['minutes']} minutes on the 2-core development machine.
- Sequences seen: {seen['think']} think, {seen['draw']} draw, {seen['decoder_grids']} decoder grids.
- Final losses (last logged step): {losses}.

## Base model quality

Measured on the whole Shapes evaluation set ({n} prompts, `data/benchmarks/shapes_geneval/`) by
`{run_command}` then `python -m rewards.shapes RUN_DIR` (the exact detector with GenEval's rules):

{header}
|---|{'---|' * (len(TAGS) + 1)}
{chr(10).join(rows)}

- *image accuracy*: the initial (stage-0) image is correct by GenEval's rules;
- *plan accuracy*: the greedy think text is a well-formed plan whose scene, rendered exactly, is correct;
- *plan-image agreement*: the image shows exactly the objects of its own plan.
`knowledge` is reported apart from the GenEval mean ({', '.join(GENEVAL_TAGS)}).
"""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m milr.shapes.card", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("run_dir", type=Path, help="a --model.method base run of the evaluation set, scored by rewards.shapes")
    parser.add_argument("--run_command", default="python train_free_runner.py --config configs/shapes_geneval.yaml --model.method base --output_dir RUN_DIR")
    args = parser.parse_args(argv)
    training = json.loads((args.checkpoint / "training.json").read_text())
    official = json.loads((args.run_dir / "official" / "shapes_geneval.json").read_text())
    atomic_write(args.checkpoint / "README.md", card(training, official, args.run_command))


if __name__ == "__main__":
    main()
