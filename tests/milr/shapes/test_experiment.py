"""``python -m milr.experiments.shapes --quick`` end to end on the Shapes model, cut down to one
prompt per tag and a budget of 3 reward calls: every run is made, scored and reported, and
every method's first image is base's (the seeds pair the methods, as the experiment assumes).

MILR_SHAPES_MODEL=<folder> runs it on another checkpoint (a stand-in while the shipped one is trained).
"""

from __future__ import annotations

import json
import os

import pytest

from milr.experiments import shapes
from milr.results.runs import read_run
from milr.shapes import CHECKPOINT

MODEL = os.environ.get("MILR_SHAPES_MODEL", "shapes")

pytestmark = pytest.mark.skipif(
    MODEL == "shapes" and not CHECKPOINT.is_dir(),
    reason=f"the trained Shapes model {CHECKPOINT} is not shipped yet (MILR_SHAPES_MODEL=<folder> runs on another)",
)


def test_quick_mode_runs_scores_and_reports_every_method(tmp_path):
    page = shapes.main([str(tmp_path), "--quick", "--part", "main", "--per_tag", "1", "--model.max_steps", "2",
                        "--model.backbone.name_or_path", MODEL, "--trainer.enable_progress_bar", "false"])
    assert page == tmp_path / "shapes_experiment.md"
    text = page.read_text()
    for title in ("Accuracy", "Accuracy versus reward calls", "Seconds per image", "Is the text latent doing anything?", "Image identity"):
        assert f"## {title}\n" in text
    assert (tmp_path / "shapes_experiment_curve.svg").is_file() and (tmp_path / "main" / "report.html").is_file()
    main = tmp_path / "main"
    runs = {s.name: read_run(main / s.name) for s in shapes.main_specs(2)}
    for name, run in runs.items():
        assert json.loads((main / name / "official" / "shapes_geneval.json").read_text())["images"], name
        assert json.loads((main / "logs" / f"{name}.json").read_text())["cpu_s"] > 0
        assert len(run.prompts) == 7 and all(r.get("reward_calls") <= 3 for p in run.prompts for r in p.repeats), name
    # the reference preset thinks in the authors' chat strings, so its stage 0 differs
    first = {name: {p.key: p.repeats[0].initial.read_bytes() for p in run.prompts} for name, run in runs.items() if name != "reference"}
    assert all(images == first["base"] for images in first.values())
