"""Shapes: a small world where a *trained* tiny Janus draws coloured shapes from GenEval-style
prompts, so that MILR can be measured on a CPU (docs/shapes.md).

``world`` fixes the canvas, palette, shapes, cells and image tokens; ``prompts`` writes
GenEval-schema prompts and the plans and scenes that satisfy them; ``model`` builds the tokenizer
and the Janus config; ``train`` trains it with Lightning. Nothing here imports Lightning except
``train``.
"""

from pathlib import Path

#: the trained model shipped with the package: ``--model.backbone.name_or_path shapes``
CHECKPOINT = Path(__file__).parent / "checkpoint"
