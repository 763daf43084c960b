"""The run figure and the model card are written from what a run folder and the training record hold."""

from __future__ import annotations

import json
import random

from PIL import Image

from milr.shapes import card, figure, prompts
from milr.shapes.train import TrainConfig, main as train_main
from tests.run_folders import FakePrompt, Step, fake_run


def test_the_figure_has_one_row_per_prompt_with_upscaled_images(tmp_path):
    metas = [prompts.make_prompt(tag, random.Random(i)) for i, tag in enumerate(prompts.TAGS[:3])]
    fakes = [FakePrompt(f"{i:05d}", m, [[Step(0.0, text="red circle at a1."), Step(1.0, text="blue cross at b2.")]]) for i, m in enumerate(metas)]
    run = fake_run(tmp_path / "run", fakes)
    figure.main([str(run), str(tmp_path / "figure.png")])
    image = Image.open(tmp_path / "figure.png")
    assert image.height == figure.PAD + 3 * (64 * figure.SCALE + 3 * figure.PAD + 12)
    assert image.width > 2 * 64 * figure.SCALE


def test_the_card_reads_training_and_measured_quality_and_the_training_cli_writes_its_record(tmp_path):
    out = tmp_path / "model"
    train_main(["--out", str(out), "--steps", "2", "--warmup", "1", "--hidden", "32", "--layers", "1", "--heads", "2",
                "--think_batch", "2", "--draw_batch", "2", "--decoder_batch", "2"])
    training = json.loads((out / "training.json").read_text())
    assert training["steps"] == 2 and training["config"] == {**vars(TrainConfig()), "steps": 2, "warmup": 1, "hidden": 32, "layers": 1, "heads": 2,
                                                              "think_batch": 2, "draw_batch": 2, "decoder_batch": 2}
    groups = {tag: {"score": 0.5, "n": 2} for tag in prompts.TAGS}
    measure = {"groups": groups, "geneval_mean": 0.5}
    run = tmp_path / "run"
    (run / "official").mkdir(parents=True)
    (run / "official" / "shapes_geneval.json").write_text(json.dumps({"extra": {"initial": measure, "initial plan": measure, "initial agreement": measure}}))
    card.main([str(out), str(run)])
    text = (out / "README.md").read_text()
    assert "2 steps in" in text and "| plan accuracy | 0.500 |" in text and "14 prompts" in text
