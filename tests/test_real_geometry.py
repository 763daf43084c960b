"""One MILR step through the runner on a checkpoint with Janus-Pro-1B's geometry (``tests.real_geometry``:
real vocabulary, special-token ids and chat template, 24 × 24 image tokens, 16384-code VQ, 384 px)
but one narrow layer: the ids and sizes the real model would see are checked against the facts in
``tests/fixtures/janus_pro_geometry/`` and what transformers' own ``JanusProcessor`` makes of the
saved folder. About 15 s of CPU on the 2-core machine (the normal suite)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import JanusProcessor

import train_free_runner
from milr.backbone import JanusBackbone
from milr.bench.model_sizes import SHAPES, janus_config
from milr.prompts import THINK_SYSTEM, THINK_TEMPLATE
from tests.real_geometry import fact, save_checkpoint

PROMPTS = ["a red apple", "two blue cups on a wooden table"]  # different lengths: the shorter row is left-padded
IDS = fact("special_tokens.json")["ids"]
BOS, PAD, BOI = IDS["<｜begin▁of▁sentence｜>"], IDS["<｜▁pad▁｜>"], IDS["<begin_of_image>"]
GRID = fact("config.json")["vision_config"]["image_size"] // fact("config.json")["vision_config"]["patch_size"]


@dataclass
class Seen:
    """What the model was fed during the run: every id batch of the text embedding and of the
    image-token embedding, and the VQ decodes (tokens in, pixel shape out)."""

    text_ids: list[torch.Tensor] = field(default_factory=list)
    image_ids: list[torch.Tensor] = field(default_factory=list)
    decodes: list[tuple[torch.Tensor, tuple[int, ...]]] = field(default_factory=list)

    def watch(self, backbone: JanusBackbone) -> None:
        model = backbone.model
        model.get_input_embeddings().register_forward_hook(lambda m, args, out: self.text_ids.append(args[0].cpu()))
        model.model.generation_embeddings.register_forward_hook(lambda m, args, out: self.image_ids.append(args[0].cpu()))
        vq, decode = model.model.vqmodel, model.model.vqmodel.decode

        def recorded(tokens: torch.Tensor) -> torch.Tensor:
            pixels = decode(tokens)
            self.decodes.append((tokens.cpu(), tuple(pixels.shape)))
            return pixels

        vq.decode = recorded

    def image_rows(self) -> list[torch.Tensor]:
        """The [cond; uncond] prompt batches (rows ending in ``<begin_of_image>``)."""
        return [ids for ids in self.text_ids if ids.shape[1] > 1 and bool((ids[:, -1] == BOI).all())]

    def think_rows(self) -> list[torch.Tensor]:
        """The think-prompt prefills: every row holds BOS (a forced think prefix or a decode step
        does not), none ends in ``<begin_of_image>``."""
        return [ids for ids in self.text_ids if bool((ids == BOS).any(1).all()) and not bool((ids[:, -1] == BOI).any())]


@dataclass
class Run:
    folder: Path  # the saved checkpoint
    out: Path  # the runner's output_dir
    seen: Seen
    processor: JanusProcessor  # transformers' own, loaded from the saved folder


def unpadded(row: torch.Tensor) -> list[int]:
    """A left-padded row without its padding (a prompt starts with BOS)."""
    ids = row.tolist()
    return ids[ids.index(BOS) :]


def user_turn(processor: JanusProcessor, text: str) -> str:
    """One user message and the open assistant turn, rendered by the checkpoint's chat template."""
    return processor.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": text}]}], add_generation_prompt=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Save the checkpoint, then one MILR step (stage 0 + step 1, mode ``both``) of two prompts
    through the runner from that folder, the whole image forced from the latents at step 1."""
    folder = save_checkpoint(tmp_path_factory.mktemp("janus_pro_geometry"))
    out = tmp_path_factory.mktemp("out")
    seen = Seen()
    attach = JanusBackbone._attach

    def watched(self: JanusBackbone, *args, **kwargs) -> None:
        attach(self, *args, **kwargs)
        seen.watch(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JanusBackbone, "_attach", watched)
        train_free_runner.main([
            "--model.backbone.name_or_path", str(folder), "--model.backbone.device", "cpu", "--model.backbone.dtype", "float32",
            "--model.backbone.max_think_tokens", "8", "--model.reward", "tests.helpers.ConstantReward",
            "--model.mode", "both", "--model.text_ratio", "0.5", "--model.image_ratio", "1.0", "--model.max_steps", "1",
            "--model.reward_threshold", "null", "--data.prompts", json.dumps(PROMPTS), "--data.batch_size", "2",
            "--trainer.enable_progress_bar", "false", "--output_dir", str(out),
        ])  # fmt: skip
    return Run(folder, out, seen, JanusProcessor.from_pretrained(folder))


def texts(run: Run, index: int) -> list[str]:
    """The think text of each step of prompt ``index`` (trace order)."""
    trace = (run.out / f"{index:05d}" / "trace" / "0000.jsonl").read_text().splitlines()
    return [json.loads(line)["text"] for line in trace]


def test_the_saved_folder_has_janus_pro_1b_ids_and_geometry(run):
    config, generation = json.loads((run.folder / "config.json").read_text()), fact("generation_config.json")
    assert config["text_config"]["vocab_size"] == 102400 and config["image_token_id"] == IDS["<image_placeholder>"]
    assert config["vision_config"]["num_image_tokens"] == GRID * GRID == 576 and config["vq_config"]["num_embeddings"] == 16384
    tokenizer = run.processor.tokenizer
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (100000, 100001, 100002)
    assert tokenizer.convert_tokens_to_ids([tokenizer.boi_token, tokenizer.image_token]) == [BOI, 100581]
    assert (generation["pad_token_id"], generation["generation_kwargs"]["boi_token_id"]) == (PAD, BOI)
    assert json.loads((run.folder / "generation_config.json").read_text())["pad_token_id"] == PAD


def test_think_prompts_are_the_system_prompt_over_the_real_chat_template(run):
    """DeepSeek's SFT format pastes the system prompt as is (the chat template would label it
    "System: "), then the user turn exactly as the template renders it."""
    tokenizer = run.processor.tokenizer
    expected = {tuple(tokenizer(f"{THINK_SYSTEM}\n\n{user_turn(run.processor, THINK_TEMPLATE.format(p))}").input_ids) for p in PROMPTS}
    fed = {tuple(unpadded(row)) for batch in run.seen.think_rows() for row in batch}
    assert fed == expected
    roles = tokenizer.convert_tokens_to_ids(["<|User|>", "<|Assistant|>"])
    assert all(row.count(roles[0]) == row.count(roles[1]) == 1 for row in fed)  # each role label is one special token


def test_image_prompts_are_what_the_real_processor_makes_of_the_chat_template(run):
    """Every conditional row is ``JanusProcessor(generation_mode="image")`` of the chat template's
    rendering of "{prompt}. {think text}", for each think text the steps used."""
    expected = set()
    for index, prompt in enumerate(PROMPTS):
        for think in texts(run, index):
            message = f"{prompt}. {think}" if think else prompt
            expected.add(tuple(run.processor(text=user_turn(run.processor, message), generation_mode="image").input_ids[0].tolist()))
    batches = run.seen.image_rows()
    fed = {tuple(unpadded(row)) for batch in batches for row in batch[: len(batch) // 2]}
    assert fed == expected and len(batches) >= 1


def test_unconditional_rows_are_bos_real_pad_id_and_begin_of_image(run):
    batches = run.seen.image_rows()
    assert batches
    for batch in batches:
        cond, uncond = batch.chunk(2)
        for c, u in zip(cond.tolist(), uncond.tolist()):
            left = c.index(BOS)  # left padding of the shorter prompt
            assert c[:left] == [PAD] * left
            assert u == [PAD] * left + [BOS] + [PAD] * (len(c) - left - 2) + [BOI]
    assert any(c.index(BOS) > 0 for batch in batches for c in batch.tolist())  # padding was exercised


def test_step_one_forces_all_576_image_tokens_from_the_latents_into_both_cfg_rows_and_the_decode(run):
    initial, step1 = run.seen.decodes
    forced = [ids for ids in run.seen.image_ids if ids.shape[1] > 1]
    assert [f.shape for f in forced] == [torch.Size([4, GRID * GRID])]  # one forced prefix: 2 prompts × (cond, uncond)
    cond, uncond = forced[0].chunk(2)
    assert torch.equal(cond, uncond) and torch.equal(step1[0], cond)  # the forced prefix is the decoded image
    assert initial[0].shape == (2, GRID * GRID)
    assert len([ids for ids in run.seen.image_ids if ids.shape[1] == 1]) == 575  # stage 0: the other tokens one by one


def test_images_decode_to_384_px(run):
    assert [shape for _, shape in run.seen.decodes] == [(2, 3, 384, 384)] * 2
    for index in range(len(PROMPTS)):
        for kind in ("initial", "samples"):
            assert Image.open(run.out / f"{index:05d}" / kind / "0000.png").size == (384, 384)


def test_the_bench_janus_pro_1b_shape_has_the_real_1b_geometry():
    """``python -m milr.bench --model 1b`` times random weights at these shapes: they must be the checkpoint's."""
    bench, real = janus_config(SHAPES["1b"]), fact("config.json")
    for part, keys in {
        "text_config": ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                        "num_key_value_heads", "max_position_embeddings", "rms_norm_eps"),
        "vision_config": ("hidden_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size", "num_image_tokens"),
        "vq_config": ("num_embeddings", "embed_dim", "base_channels", "channel_multiplier", "latent_channels", "num_res_blocks"),
    }.items():  # fmt: skip
        assert {k: getattr(getattr(bench, part), k) for k in keys} == {k: real[part][k] for k in keys}, part
