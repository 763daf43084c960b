"""Shapes training: the data teach both pipeline turns as milr sends them, and the Lightning loop
runs and saves a checkpoint that loads through the same from_pretrained path as Janus-Pro."""

from __future__ import annotations

import random

import pytest

import torch

from milr import prompts as chat
from milr.backbone import JanusBackbone
from milr.shapes import prompts, world
from milr.shapes.model import build_tokenizer
from milr.shapes.train import IGNORE, Sequences, ShapesTraining, TrainConfig, build, token_weights, train

SMALL = TrainConfig(steps=3, think_batch=2, draw_batch=4, decoder_batch=2, warmup=1, hidden=32, layers=1, heads=2)


def test_the_tokenizer_is_deterministic_round_trips_and_makes_each_plan_clause_one_token():
    tok = build_tokenizer()
    assert tok.get_vocab() == build_tokenizer().get_vocab()
    plan = " red circle at a1. blue cross at d3."
    ids = tok(plan, add_special_tokens=False).input_ids
    assert tok.decode(ids) == plan
    assert tok.convert_ids_to_tokens(ids) == [" red circle at a1.", " blue cross at d3."]
    assert all("Ġ" + w in tok.get_vocab() for w in (*world.COLORS, *world.SHAPES))
    prompt = "a photo of a red circle and a blue cross"  # prompts keep a token per word
    assert tok.convert_ids_to_tokens(tok(prompt, add_special_tokens=False).input_ids)[-3:] == ["Ġa", "Ġblue", "Ġcross"]


def test_clause_tokens_train_through_shared_factors_and_save_as_plain_rows():
    """A clause row is colour + shape + cell during training; the saved model holds the same sums,
    with lm_head untied from the embeddings as in Janus-Pro."""
    model, tok = build(SMALL)
    module = ShapesTraining(model, tok, SMALL)
    for table in module.clauses.tables.values():
        torch.nn.init.normal_(table.weight, std=1.0)
    batch = Sequences(tok, SMALL).think_batch(random.Random(0))
    with torch.no_grad():
        factored = module.think_loss(batch)
        module.clauses.materialise(model)
        hidden = module._lm(batch["think_mask"], input_ids=batch["think_ids"])
        plain = torch.nn.functional.cross_entropy(model.lm_head(hidden[:, :-1]).flatten(0, 1), batch["think_labels"][:, 1:].flatten(), ignore_index=IGNORE)
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()
    torch.testing.assert_close(factored, plain)
    at_a1, at_b1 = tok.convert_tokens_to_ids([" red circle at a1.", " red circle at b1."])
    rows = model.get_input_embeddings().weight
    cell = module.clauses.tables["in_cell"].weight
    torch.testing.assert_close(rows[at_a1] - rows[at_b1], cell[0] - cell[1])


def test_think_sequences_are_milrs_think_prompt_then_the_plan_and_only_the_plan_is_learned():
    tok = build_tokenizer()
    batch = Sequences(tok, TrainConfig(think_batch=6, reference_format=0.5)).think_batch(random.Random(0))
    for ids, mask, labels in zip(batch["think_ids"], batch["think_mask"], batch["think_labels"]):
        learned = labels[labels != IGNORE].tolist()
        assert learned[-1] == tok.eos_token_id
        assert prompts.parse_plan(tok.decode(learned[:-1])) is not None
        head_ids = ids[mask.bool()][: (labels == IGNORE).sum() - (mask == 0).sum()]
        assert head_ids[0] == tok.bos_token_id
        head = tok.decode(head_ids[1:])
        prompt = head.split('prompt: "')[1].split('"')[0]
        assert head in (chat.think_prompt(prompt, "janus"), chat.think_prompt(prompt, "reference"))


def test_draw_sequences_follow_the_plan_in_the_prompt_and_unconditional_rows_keep_only_bos_and_boi():
    tok = build_tokenizer()
    cfg = TrainConfig(draw_batch=200)
    batch = Sequences(tok, cfg).draw_batch(random.Random(0))
    boi = tok.convert_tokens_to_ids("<begin_of_image>")
    planned = uncond = 0
    for ids, mask, grid in zip(batch["draw_ids"], batch["draw_mask"], batch["draw_tokens"]):
        real = ids[mask.bool()]
        assert real[0] == tok.bos_token_id and real[-1] == boi
        if (real[1:-1] == tok.pad_token_id).all():
            uncond += 1
            continue
        text = tok.decode(real, skip_special_tokens=True)
        message = text.split(": ", 1)[1].rsplit("\n\n", 1)[0]
        plan = prompts.parse_plan(message.split(". ", 1)[1]) if ". " in message else None
        if plan is not None:
            planned += 1
            assert (grid.view(8, 8).numpy() == world.tokens(plan)).all()
    assert 0.05 < uncond / cfg.draw_batch < 0.2 and planned > 0.6 * cfg.draw_batch


def test_the_training_loop_runs_saves_and_reloads_through_from_pretrained(tmp_path):
    model, tokenizer, record = train(SMALL, tmp_path / "model")
    assert record["steps"] == 3 and set(record["final_losses"]) == {"think", "draw", "decoder"}
    assert all(torch.isfinite(torch.tensor(v)) for v in record["final_losses"].values())
    backbone = JanusBackbone(str(tmp_path / "model"), device="cpu", max_think_tokens=4)
    assert backbone.pad_id == tokenizer.pad_token_id == backbone.model.generation_config.pad_token_id
    assert backbone.num_image_tokens == 64
    images = backbone.decode_images(torch.zeros(2, 64, dtype=torch.long))
    assert images[0].size == (world.CANVAS, world.CANVAS)
    loaded = backbone.model.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(loaded[name], value), name


def test_training_is_reproducible_from_its_seed(tmp_path):
    first, _, _ = train(SMALL)
    second, _, _ = train(SMALL)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


def test_a_missing_shapes_model_is_one_clear_error_naming_the_training_command(tmp_path, monkeypatch):
    import milr.shapes
    from milr.backbone import CheckpointError, check_checkpoint

    monkeypatch.setattr(milr.shapes, "CHECKPOINT", tmp_path / "absent")
    with pytest.raises(CheckpointError, match=r"python -m milr.shapes.train --out .*absent"):
        check_checkpoint("shapes")
    with pytest.raises(CheckpointError, match=r"python -m milr.shapes.train --out .*absent"):
        JanusBackbone("shapes", device="cpu")


def test_object_tokens_weigh_more_than_background_in_the_drawing_loss():
    grid = torch.from_numpy(world.tokens([world.Obj((1, 2), "red", "circle")]).reshape(-1))
    weights = token_weights(grid, 8.0)
    assert weights.sum() == 60 * 1.0 + 4 * 8.0
    assert (weights[grid >= world.BACKGROUND_CODES] == 8.0).all()


def test_the_decoder_learns_scenes_as_drawn_and_random_grids():
    """Half of each decoder batch are scenes (sparse, as the model draws them): a decoder trained on
    dense random grids alone painted noise over sparse scenes."""
    batch = Sequences(build_tokenizer(), TrainConfig(decoder_batch=8)).decoder_batch(random.Random(0))
    objects = (batch["decoder_tokens"] >= world.BACKGROUND_CODES).sum(-1)
    assert ((objects[:4] % 4 == 0) & (objects[:4] >= 4) & (objects[:4] <= 16)).all()  # scenes: 1-4 objects, 4 tokens each
    assert objects[4:].float().mean() > objects[:4].float().mean()  # random grids: denser
