"""The shipped Shapes model: loaded by name through from_pretrained, small, and the demo (the
runner's default) runs on it and is scored by the exact detector."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


from milr.backbone import JanusBackbone
from milr.shapes import CHECKPOINT, prompts

ROOT = Path(__file__).resolve().parents[3]


def test_the_checkpoint_is_package_data_under_20_mb_with_its_card():
    files = {p.name for p in CHECKPOINT.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training.json", "README.md"} <= files
    assert sum(p.stat().st_size for p in CHECKPOINT.iterdir()) < 20 * 2**20
    card = (CHECKPOINT / "README.md").read_text()
    assert "plan accuracy" in card and "python -m milr.shapes.train" in card


def test_shapes_loads_through_from_pretrained_and_writes_plans():
    backbone = JanusBackbone("shapes", device="cpu", max_think_tokens=48)
    assert backbone.name_or_path == "shapes" and backbone.num_image_tokens == 64
    assert backbone.pad_id == backbone.model.generation_config.pad_token_id
    texts = backbone.think(["a photo of a red circle", "a photo of two squares"]).texts
    plans = [prompts.parse_plan(t) for t in texts]
    assert plans[0] is not None and [(o.color, o.shape) for o in plans[0]] == [("red", "circle")]
    assert plans[1] is not None and [o.shape for o in plans[1]] == ["square", "square"]


def test_the_demo_is_the_default_run_and_rewards_shapes_scores_it(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "train_free_runner.py", "--output_dir", str(tmp_path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["prompts"] == 7
    score = subprocess.run([sys.executable, "-m", "rewards.shapes", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert score.returncode == 0, score.stderr[-2000:]
    official = json.loads((tmp_path / "official" / "shapes_geneval.json").read_text())
    assert set(official["groups"]) == set(prompts.TAGS)
    # the selected image is never worse than the initial one (select: best)
    assert official["overall"] >= official["extra"]["initial"]["geneval_mean"]
