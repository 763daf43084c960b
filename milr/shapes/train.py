"""Train the Shapes model with Lightning: ``python -m milr.shapes.train --out DIR``.

Both turns of the real pipeline are learned from sequences generated on the fly from a seeded
stream (no data set on disk):

- think: the think prompt milr sends Janus-Pro (``milr.prompts.think_prompt``) → ``" " + plan`` + EOS;
- draw: the image prompt ``"{prompt}. {plan}"`` + ``<begin_of_image>`` → the plan's 64 image tokens.
  The image follows the *plan*: some draws pair a prompt with another prompt's plan, some have no
  plan (the authors' image mode), and some drop the condition (every token but BOS and
  ``<begin_of_image>`` becomes pad, as milr's unconditional CFG row) so guidance works;
- decoder: the VQ decoder learns to paint token grids (scene grids and random ones) with the
  world's exact pixels.

A quarter of the text uses the authors' ``User`` / ``Assistant`` labels (``prompt_format:
reference``). The frozen parts (SigLIP tower, VQ encoder) stay at their random initialisation:
MILR never uses them. The result is saved with ``save_pretrained`` (safetensors, tokenizer,
generation config) and a model card.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from lightning import Callback, LightningModule, Trainer, seed_everything
from torch.utils.data import DataLoader, IterableDataset
from transformers import GenerationConfig, JanusForConditionalGeneration, PreTrainedTokenizerFast

from milr import prompts as chat
from milr.shapes import prompts, world
from milr.shapes.model import CLAUSE_OBJECTS, IMAGE_TOKENS, build_config, build_tokenizer

IGNORE = -100


@dataclass
class TrainConfig:
    """Everything that fixes the trained model; written into the model card."""

    seed: int = 0
    steps: int = 1500
    think_batch: int = 16
    draw_batch: int = 48
    decoder_batch: int = 8
    lr: float = 2e-3
    warmup: int = 100
    hidden: int = 192
    layers: int = 4
    heads: int = 6
    code_dim: int = 64  # an image code's embedding width (Janus-Pro: 8; wider separates the 160 codes from the start)
    reference_format: float = 0.25  # share of text in the authors' User/Assistant labels
    mismatched_plan: float = 0.12  # draws whose plan belongs to another prompt (the image follows the plan)
    no_plan: float = 0.08  # draws from the bare prompt (the authors' image mode)
    uncond: float = 0.10  # condition dropout for classifier-free guidance
    plan_only_steps: int = 500  # first steps draw from the bare plan (no prompt, no chat template)
    clip: float = 1.0  # gradient-norm clipping
    object_weight: float = 8.0  # loss weight of object tokens against background ones (a few per image)


class Sequences(IterableDataset):
    """An endless, seeded stream of training batches (think, draw and decoder parts)."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, cfg: TrainConfig) -> None:
        self.tok, self.cfg = tokenizer, cfg
        self.pad, self.bos, self.eos = tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
        self.boi = tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["boi_token"])

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = random.Random(self.cfg.seed)
        step = 0
        while True:
            draw = self.draw_batch(rng, plan_only=step < self.cfg.plan_only_steps)
            yield {**self.think_batch(rng), **draw, **self.decoder_batch(rng)}
            step += 1

    def _sample(self, rng: random.Random) -> tuple[dict[str, Any], list[world.Obj]]:
        meta = prompts.make_prompt(rng.choice(prompts.TAGS), rng)
        return meta, prompts.scene(meta, rng)

    def _format(self, rng: random.Random) -> chat.PromptFormat:
        return "reference" if rng.random() < self.cfg.reference_format else "janus"

    def think_batch(self, rng: random.Random) -> dict[str, torch.Tensor]:
        heads, tails = [], []
        for _ in range(self.cfg.think_batch):
            meta, objects = self._sample(rng)
            heads.append(self.tok(chat.think_prompt(meta["prompt"], self._format(rng))).input_ids)
            tails.append(self.tok(" " + prompts.plan_text(objects), add_special_tokens=False).input_ids + [self.eos])
        ids, mask = _pad(heads, self.pad, left=True)
        tail_ids, tail_mask = _pad(tails, self.pad, left=False)
        labels = torch.where(tail_mask.bool(), tail_ids, IGNORE)
        return {
            "think_ids": torch.cat([ids, tail_ids], 1),
            "think_mask": torch.cat([mask, tail_mask], 1),
            "think_labels": torch.cat([torch.full_like(ids, IGNORE), labels], 1),
        }

    def draw_batch(self, rng: random.Random, plan_only: bool = False) -> dict[str, torch.Tensor]:
        """``plan_only``: the text is the bare plan, a curriculum: among a handful of text tokens
        the drawing turn learns to look a cell's clause up quickly, then keeps it in full prompts."""
        texts, grids = [], []
        uncond = []
        for _ in range(self.cfg.draw_batch):
            meta, objects = self._sample(rng)
            roll = rng.random()
            plan: str | None = prompts.plan_text(objects)
            if roll < self.cfg.mismatched_plan:
                objects = self._sample(rng)[1]
                plan = prompts.plan_text(objects)
            elif roll < self.cfg.mismatched_plan + self.cfg.no_plan:
                plan = None
            fmt = self._format(rng)
            text = " " + plan if plan_only and plan is not None else chat.image_prompt(meta["prompt"], plan, fmt)
            texts.append(self.tok(text + IMAGE_TOKENS["boi_token"]).input_ids)
            grids.append(world.tokens(objects).reshape(-1))
            uncond.append(rng.random() < self.cfg.uncond)
        ids, mask = _pad(texts, self.pad, left=True)
        drop = torch.tensor(uncond)[:, None] & (ids != self.bos) & (ids != self.boi) & mask.bool()
        return {"draw_ids": torch.where(drop, self.pad, ids), "draw_mask": mask, "draw_tokens": torch.from_numpy(np.stack(grids))}

    def decoder_batch(self, rng: random.Random) -> dict[str, torch.Tensor]:
        """Half the grids are scenes (mostly background, as the model draws them), half random ones
        (a background share drawn from 50-95 %, the rest any shape code), so every code is painted in
        every neighbourhood. A decoder trained on random grids alone painted noise over sparse
        scenes: its attention block had never seen a mostly empty grid."""
        gen = np.random.default_rng(rng.getrandbits(32))
        scenes = self.cfg.decoder_batch // 2
        shape = (self.cfg.decoder_batch - scenes, world.TOKENS, world.TOKENS)
        background = np.broadcast_to(np.arange(world.BACKGROUND_CODES).reshape(world.TOKENS, world.TOKENS), shape)
        share = gen.uniform(0.5, 0.95, (shape[0], 1, 1))
        random_grids = np.where(gen.random(shape) < share, background, gen.integers(world.BACKGROUND_CODES, world.CODES, shape))
        scene_rng = random.Random(int(gen.integers(2**32)))
        grids = np.concatenate([np.stack([world.tokens(self._sample(scene_rng)[1]) for _ in range(scenes)]).reshape(-1, *shape[1:]), random_grids])
        pixels = np.stack([world.paint(g) for g in grids])
        return {"decoder_tokens": torch.from_numpy(grids.reshape(len(grids), -1)), "decoder_pixels": _to_unit(torch.from_numpy(pixels))}


def token_weights(tokens: torch.Tensor, object_weight: float) -> torch.Tensor:
    """The drawing loss's weight per image token: ``object_weight`` for a shape code, 1 for
    background. An image holds a few object tokens among 64; unweighted, what to draw (which the
    plan says) was drowned by where the background goes on, and five trainings never learned it."""
    return torch.where(tokens >= world.BACKGROUND_CODES, object_weight, 1.0)


def _pad(rows: list[list[int]], pad: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        span = slice(width - len(r), width) if left else slice(0, len(r))
        ids[i, span], mask[i, span] = torch.tensor(r), 1
    return ids, mask


def _to_unit(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` → float ``[B, 3, H, W]`` in [-1, 1], the VQ decoder's range."""
    return pixels.permute(0, 3, 1, 2).float() / 127.5 - 1


class ClauseFactors(nn.Module):
    """How the plan-clause tokens are trained: each clause token's input embedding and output row
    is the sum of a colour, a shape and a cell vector, so what the model learns about one red
    circle holds for every red circle (384 free rows would each see a few hundred examples).
    ``materialise`` writes the sums into the model's plain tables, so the saved model is an
    ordinary Janus checkpoint."""

    def __init__(self, tokenizer: PreTrainedTokenizerFast, hidden: int) -> None:
        super().__init__()
        ids = tokenizer.convert_tokens_to_ids([" " + prompts.clause(o) for o in CLAUSE_OBJECTS])
        self.register_buffer("ids", torch.tensor(ids), persistent=False)
        factors = {
            "color": [world.COLORS.index(o.color) for o in CLAUSE_OBJECTS],
            "shape": [world.SHAPES.index(o.shape) for o in CLAUSE_OBJECTS],
            "cell": [o.cell[1] * world.GRID + o.cell[0] for o in CLAUSE_OBJECTS],
        }
        for name, index in factors.items():
            self.register_buffer(f"{name}_index", torch.tensor(index), persistent=False)
        sizes = {"color": len(world.COLORS), "shape": len(world.SHAPES), "cell": world.GRID**2}
        self.tables = nn.ModuleDict({f"{side}_{name}": nn.Embedding(n, hidden) for side in ("in", "out") for name, n in sizes.items()})
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=0.02)

    def rows(self, side: str) -> torch.Tensor:
        return sum(self.tables[f"{side}_{name}"](getattr(self, f"{name}_index")) for name in ("color", "shape", "cell"))

    def table(self, weight: torch.Tensor, side: str) -> torch.Tensor:
        """``weight`` (vocabulary × hidden) with the clause rows replaced by their factor sums."""
        return weight.index_put((self.ids,), self.rows(side))

    @torch.no_grad()
    def materialise(self, model: JanusForConditionalGeneration) -> None:
        model.get_input_embeddings().weight[self.ids] = self.rows("in")
        model.lm_head.weight[self.ids] = self.rows("out")


class ShapesTraining(LightningModule):
    """The Janus model under training; one step = think + draw + decoder losses, summed."""

    def __init__(self, model: JanusForConditionalGeneration, tokenizer: PreTrainedTokenizerFast, cfg: TrainConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg
        self.clauses = ClauseFactors(tokenizer, model.config.text_config.hidden_size)
        model.model.vision_model.requires_grad_(False)
        model.model.aligner.requires_grad_(False)
        model.model.vqmodel.encoder.requires_grad_(False)
        model.model.vqmodel.quant_conv.requires_grad_(False)

    def _lm(self, mask: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return self.model.model.language_model(attention_mask=mask, position_ids=positions, **inputs).last_hidden_state

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.clauses.table(self.model.get_input_embeddings().weight, "in"))

    def think_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self._lm(batch["think_mask"], inputs_embeds=self._embed(batch["think_ids"]))
        logits = F.linear(hidden[:, :-1], self.clauses.table(self.model.lm_head.weight, "out"))
        return F.cross_entropy(logits.flatten(0, 1), batch["think_labels"][:, 1:].flatten(), ignore_index=IGNORE)

    def draw_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, mask, tokens = batch["draw_ids"], batch["draw_mask"], batch["draw_tokens"]
        text = self._embed(ids)
        image = self.model.prepare_embeddings_for_image_generation(tokens[:, :-1])
        full_mask = torch.cat([mask, torch.ones_like(tokens[:, :-1])], 1)
        hidden = self._lm(full_mask, inputs_embeds=torch.cat([text, image], 1))
        logits = self.model.model.generation_head(hidden[:, ids.shape[1] - 1 :])
        losses = F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none")
        weights = token_weights(tokens.flatten(), self.cfg.object_weight)
        return (losses * weights).sum() / weights.sum()

    def decoder_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.mse_loss(self.model.model.vqmodel.decode(batch["decoder_tokens"]), batch["decoder_pixels"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = {"think": self.think_loss(batch), "draw": self.draw_loss(batch), "decoder": self.decoder_loss(batch)}
        self.log_dict({f"loss/{k}": v for k, v in losses.items()}, prog_bar=True)
        return sum(losses.values())

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=0.01)

        def schedule(step: int) -> float:  # linear warm-up, cosine decay to a tenth
            if step < self.cfg.warmup:
                return (step + 1) / self.cfg.warmup
            progress = min(1.0, (step - self.cfg.warmup) / max(1, self.cfg.steps - self.cfg.warmup))
            return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class LossHistory(Callback):
    """Records (and prints) the losses every ``every`` steps: the curve goes into the model card."""

    def __init__(self, every: int = 100) -> None:
        self.every, self.rows, self.start = every, [], time.time()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every == 0 or step == trainer.max_steps:
            row = {"step": step, "minutes": round((time.time() - self.start) / 60, 2)}
            row.update({k.split("/")[1]: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.startswith("loss/")})
            self.rows.append(row)
            print(json.dumps(row), flush=True)


def generation_config(tokenizer: PreTrainedTokenizerFast) -> GenerationConfig:
    """What Janus-Pro's generation config holds, with this tokenizer's ids (transformers'
    ``generate(generation_mode="image")`` needs them)."""
    return GenerationConfig(
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        guidance_scale=5.0, generation_kwargs={"boi_token_id": tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["boi_token"])},
    )


def build(cfg: TrainConfig) -> tuple[JanusForConditionalGeneration, PreTrainedTokenizerFast]:
    """The untrained model and the tokenizer, deterministic in ``cfg.seed``."""
    tokenizer = build_tokenizer()
    seed_everything(cfg.seed, verbose=False)
    model = JanusForConditionalGeneration(build_config(len(tokenizer), cfg.hidden, cfg.layers, cfg.heads, cfg.code_dim))
    model.config.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["image_token"])
    model.generation_config = generation_config(tokenizer)
    return model, tokenizer


def train(cfg: TrainConfig, out: Path | None = None, **trainer_options: Any) -> tuple[JanusForConditionalGeneration, PreTrainedTokenizerFast, dict[str, Any]]:
    """Train with Lightning for ``cfg.steps`` steps; save to ``out`` (with a model card) when given.
    Returns the model, the tokenizer and the training record (minutes, sequences, final losses)."""
    model, tokenizer = build(cfg)
    module = ShapesTraining(model, tokenizer, cfg)
    loader = DataLoader(Sequences(tokenizer, cfg), batch_size=None)
    history = LossHistory()
    trainer = Trainer(
        max_steps=cfg.steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, gradient_clip_val=cfg.clip,
        enable_model_summary=False, enable_progress_bar=False, callbacks=[history], **trainer_options,
    )
    start = time.time()
    trainer.fit(module, loader)
    record = {
        "minutes": round((time.time() - start) / 60, 2),
        "steps": trainer.global_step,
        "sequences": {
            "think": trainer.global_step * cfg.think_batch,
            "draw": trainer.global_step * cfg.draw_batch,
            "decoder_grids": trainer.global_step * cfg.decoder_batch,
        },
        "final_losses": {k: v for k, v in history.rows[-1].items() if k not in ("step", "minutes")} if history.rows else {},
        "loss_history": history.rows,
        "config": asdict(cfg),
    }
    module.clauses.materialise(model)
    model.eval()
    if out is not None:
        save(model, tokenizer, out, record)
    return model, tokenizer, record


def save(model: JanusForConditionalGeneration, tokenizer: PreTrainedTokenizerFast, out: Path, record: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # safetensors, config.json, generation_config.json
    tokenizer.save_pretrained(out)
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder to save the trained model in")
    defaults = TrainConfig()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name}", type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    _, _, record = train(TrainConfig(**args), out)
    print(json.dumps({k: record[k] for k in ("minutes", "steps", "final_losses")}))


if __name__ == "__main__":
    main()
