"""``MILRModule``: the latent prefixes of the prompts being optimised, as a LightningModule.

One Lightning epoch is one MILR step for every prompt in the batch, so the stock loop,
precision plugins, loggers and callbacks (``EarlyStopping`` included) drive the method:

1. free latent slots are refilled from the prompt stream (the batch): think text, initial
   image and reward of each new prompt (stage 0; it is that prompt's step 0);
2. every other running prompt is decoded from its current latents and scored;
3. stop rules run: the threshold and step budget given here, then any callback that defines
   ``on_prompt_scored(trainer, pl_module, state)`` and calls ``pl_module.stop_prompt``;
4. ``training_step`` returns the REINFORCE loss of the prompts still running; Lightning's
   optimiser moves their latents. A stopped prompt's latents get no gradient (``None``), so
   Adam's momentum cannot move them either.

The frozen backbone is a plain attribute, not a submodule: ``parameters()`` and
``state_dict()`` hold only the latents.
"""

from __future__ import annotations

import time
from typing import Any, Literal, Sequence

import torch
from lightning import LightningModule
from torch import nn

from data.prompt import Prompt
from milr.backbone import ImageContext, JanusBackbone
from milr.objective import Estimator, prefix_length, reinforce_loss, token_log_prob
from milr.prompt_cache import PromptCache, PromptKV
from milr.prompts import image_prompt
from milr.state import MILRResult, PromptState, Sample, StepRecord, StopReason
from rewards.base import Reward, as_reward, score

Mode = Literal["text", "image", "both"]

#: Trainer settings MILR needs: one step per epoch, nothing to validate, no weight checkpoints.
TRAINER_DEFAULTS: dict[str, Any] = {
    "max_epochs": -1,
    "limit_train_batches": 1,
    "num_sanity_val_steps": 0,
    "enable_checkpointing": False,
    "enable_model_summary": False,
    "log_every_n_steps": 1,
}


def prompt_seed(seed: int, index: int) -> int:
    """Each prompt's own seed: results do not depend on run order or batch composition."""
    return (seed * 1_000_003 + index) % (2**62)


class MILRModule(LightningModule):
    """Test-time latent optimisation of Janus-Pro (MILR) for a stream of prompts.

    Args:
        backbone: the frozen Janus model (``JanusBackbone``).
        reward: a ``rewards.Reward`` (or any ``(images, prompts) -> Tensor[B]`` in [0, 1]).
        mode: optimise the ``text`` latents, the ``image`` latents, or ``both``.
        text_ratio / image_ratio: latent prefix = first ``floor(ratio · length)`` tokens.
        lr / optimizer: Adam (reference) or SGD on the fp32 latents.
        max_steps: optimisation steps per prompt (rewards has at most ``max_steps + 1`` entries).
        reward_threshold: a prompt stops once its reward is strictly above this (None: never).
        estimator: ``reference`` (baseline 1, the paper) or ``rloo`` (leave-one-out baseline).
        samples_per_step: candidates decoded per prompt per step (``rloo`` needs ≥ 2).
        seed: base seed; each prompt samples from its own generator seeded from it and its index.
        select: return the ``best``-reward image or the ``last`` one (the reference).
        batch_size: number of latent slots, i.e. prompts optimised at once.
    """

    def __init__(
        self,
        backbone: JanusBackbone,
        reward: Reward,
        mode: Mode = "both",
        text_ratio: float = 0.2,
        image_ratio: float = 0.02,
        lr: float = 0.03,
        optimizer: Literal["adam", "sgd"] = "adam",
        max_steps: int = 20,
        reward_threshold: float | None = None,
        estimator: Estimator = "reference",
        samples_per_step: int = 1,
        seed: int = 0,
        select: Literal["best", "last"] = "best",
        batch_size: int = 1,
    ) -> None:
        super().__init__()
        if mode not in ("text", "image", "both"):
            raise ValueError(f"mode must be 'text', 'image' or 'both', got {mode!r}")
        if estimator == "rloo" and samples_per_step < 2:
            raise ValueError("estimator='rloo' needs samples_per_step >= 2 (leave-one-out baseline)")
        if samples_per_step < 1 or batch_size < 1 or max_steps < 0:
            raise ValueError("samples_per_step and batch_size must be >= 1, max_steps >= 0")
        self.save_hyperparameters(ignore=["backbone", "reward"])
        self.backbone = backbone
        self.reward = as_reward(reward)
        self.uses_text = mode in ("text", "both")
        self.uses_image = mode in ("image", "both")
        self.image_prefix_len = prefix_length(image_ratio, backbone.num_image_tokens) if self.uses_image else 0
        if self.uses_image and self.image_prefix_len == 0:
            raise ValueError(
                f"image_ratio={image_ratio} × {backbone.num_image_tokens} image tokens floors to 0 latent "
                "tokens: nothing to optimise. Raise image_ratio or use mode='text'."
            )
        d = backbone.hidden_size
        self.text_latents = nn.ParameterList(
            [nn.Parameter(torch.zeros(0, d)) for _ in range(batch_size)] if self.uses_text else []
        )
        self.image_latents = nn.ParameterList(
            [nn.Parameter(torch.zeros(0, 2, d)) for _ in range(batch_size)] if self.uses_image else []
        )
        self.slots: list[PromptState | None] = [None] * batch_size
        self.finished: list[MILRResult] = []
        self.scored: list[PromptState] = []  # prompts scored in the current step, for callbacks
        self.timings: dict[str, float] = {}  # seconds per phase of the current step
        # each prompt's prefilled think and image prompts, kept across steps (milr.prompt_cache)
        self._think_prompts = PromptCache(backbone.think_rows, "rows" if backbone.reuse_prompts else "never")
        self._image_prompts = PromptCache(backbone.image_rows, "rows" if backbone.reuse_prompts else "batch")

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str) -> None:
        root = self.trainer.strategy.root_device
        if root != self.backbone.device:  # e.g. one GPU per rank: follow Lightning's placement
            self.backbone.to(root)
        self.reward.setup(device=self.backbone.device, dtype=self.backbone.dtype, backbone=self.backbone)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = list(self.parameters())
        if self.hparams.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.hparams.lr)
        return torch.optim.Adam(params, lr=self.hparams.lr)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """``batch`` is the prompt stream (``data.PromptStream``): free slots pull from it."""
        self.timings = {"decode": 0.0, "reward": 0.0}
        self.scored = []
        free = [i for i, s in enumerate(self.slots) if s is None]
        if free:
            self._admit(batch.take(len(free)), free)
        stale = [s for s in self.slots if s is not None and not s.fresh]
        if stale:
            self._decode(stale)
        for state in list(self.scored):
            self._apply_stop_rules(state)
        self._log_rewards()
        start = time.perf_counter()
        loss = self._loss()
        self.timings["update"] = time.perf_counter() - start
        if all(s is None for s in self.slots) and batch.exhausted:
            self.trainer.should_stop = True
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        for state in self.active():
            if not all(torch.isfinite(p).all() for p in self._latents(state.slot)):
                self.stop_prompt(state, StopReason.NONFINITE)

    def on_train_end(self) -> None:
        for state in self.active():
            self.stop_prompt(state, StopReason.FIT_END)

    # ------------------------------------------------------------------ public API for callbacks
    def active(self) -> list[PromptState]:
        """Prompts currently holding a latent slot."""
        return [s for s in self.slots if s is not None]

    def stop_prompt(self, state: PromptState, reason: StopReason | str = StopReason.CALLBACK) -> MILRResult:
        """Finish ``state``: keep its selected image, free its slot (its latents stop moving)."""
        if self.slots[state.slot] is not state:
            raise ValueError(f"prompt {state.prompt.index} is not running")
        state.stop_reason = StopReason(reason)
        chosen = state.best if self.hparams.select == "best" else state.last
        assert chosen is not None and state.best is not None
        result = MILRResult(
            prompt=state.prompt,
            image=chosen.image,
            text=chosen.text,
            rewards=state.rewards,
            final_reward=chosen.reward,
            best_reward=state.best.reward,
            steps=state.step,
            stop_reason=state.stop_reason,
            initial_image=state.initial_image,
            history=state.history,
            seconds=time.perf_counter() - state.started,
        )
        self.finished.append(result)
        self.slots[state.slot] = None
        self._reset_latents(state.slot)
        self._think_prompts.release(state.prompt.index)
        self._image_prompts.release(state.prompt.index)
        return result

    # ------------------------------------------------------------------ latents
    def _latents(self, slot: int) -> list[nn.Parameter]:
        return ([self.text_latents[slot]] if self.uses_text else []) + ([self.image_latents[slot]] if self.uses_image else [])

    def _reset_latents(self, slot: int, text: torch.Tensor | None = None, image: torch.Tensor | None = None) -> None:
        """Give ``slot`` new latent values (empty when freed) and fresh optimiser state."""
        d = self.backbone.hidden_size
        new = []
        if self.uses_text:
            new.append((self.text_latents[slot], torch.zeros(0, d) if text is None else text))
        if self.uses_image:
            new.append((self.image_latents[slot], torch.zeros(0, 2, d) if image is None else image))
        optimizers = self.trainer.optimizers if self._trainer is not None else []
        for param, value in new:
            param.data = value.detach().to(device=self.device, dtype=torch.float32).clone()
            param.grad = None
            for opt in optimizers:
                opt.state.pop(param, None)

    # ------------------------------------------------------------------ decoding
    def _generator(self, prompt: Prompt) -> torch.Generator:
        return torch.Generator(device=self.backbone.device).manual_seed(prompt_seed(self.hparams.seed, prompt.index))

    def _score(self, images: list, prompts: list[Prompt]):
        start = time.perf_counter()
        try:
            out = score(self.reward, images, prompts)
        except Exception as err:  # keep the reward's own exception, add where it happened
            name = getattr(self.reward, "name", type(self.reward).__name__)
            err.add_note(
                f"reward {name!r} failed on prompts {[p.index for p in prompts]}. Finished prompts are already "
                "written; re-running the same command resumes with the unfinished ones."
            )
            raise
        self.timings["reward"] += time.perf_counter() - start
        return out

    def _image_context(self, prompts: list[Prompt], texts: list[str]) -> ImageContext:
        """Prefilled [cond; uncond] image prompt rows; a row is prefilled only when its prompt is
        new or its think text changed (mode ``image`` keeps its think text: prefilled once)."""
        chat = [image_prompt(p.text, t) for p, t in zip(prompts, texts)]
        return self.backbone.image_context(chat, self._image_prompts.rows([p.index for p in prompts], chat))

    def _think_rows(self, prompts: Sequence[Prompt]) -> list[PromptKV]:
        """Each prompt's prefilled think prompt, prefilled once per prompt."""
        return self._think_prompts.rows([p.index for p in prompts], [p.text for p in prompts])

    def _admit(self, prompts: Sequence[Prompt], free: list[int]) -> None:
        """Stage 0 for new prompts: think text, initial image, reward; latents from their hidden states."""
        if not prompts:
            return
        bb = self.backbone
        start = time.perf_counter()
        rows = self._think_rows(prompts) if self.uses_text else None  # mode image never thinks again
        think = bb.think([p.text for p in prompts], record_hidden=self.uses_text, prompt_rows=rows)
        generators = [self._generator(p) for p in prompts]
        context = self._image_context(list(prompts), think.texts)
        sample = bb.sample_image(context, generators, record_hidden=self.image_prefix_len)
        images = bb.decode_images(sample.tokens)
        self.timings["decode"] += time.perf_counter() - start
        scores = self._score(images, list(prompts))
        for j, (prompt, slot) in enumerate(zip(prompts, free)):
            z_t = think.hidden[j][: prefix_length(self.hparams.text_ratio, len(think.hidden[j]))] if self.uses_text else None
            z_v = sample.hidden[j] if self.uses_image else None
            self._reset_latents(slot, z_t, z_v)
            state = PromptState(prompt, slot, generators[j], think.texts[j], images[j], started=start, step_started=start)
            self.slots[slot] = state
            text_prefix = bb.text_logits(z_t).argmax(-1).cpu() if z_t is not None else torch.zeros(0, dtype=torch.long)
            image_prefix = sample.tokens[j, : self.image_prefix_len].cpu()
            self._record(state, [Sample(text_prefix, image_prefix, think.texts[j], images[j], float(scores.scores[j]), scores.details[j])])
            if z_t is not None and len(z_t) == 0:
                self.stop_prompt(state, StopReason.EMPTY_PREFIX)

    def _decode(self, states: list[PromptState]) -> None:
        """Decode ``samples_per_step`` candidates per prompt from its current latents and score them."""
        bb, k = self.backbone, self.hparams.samples_per_step
        start = time.perf_counter()
        rows = [s for s in states for _ in range(k)]
        gens = [s.generator for s in rows]
        text_prefixes = [self._text_prefix(s) for s in rows]
        texts = self._think_texts(rows, text_prefixes)
        context = self._image_context([s.prompt for s in rows], texts)
        if self.uses_image:
            z = torch.stack([self.image_latents[s.slot] for s in rows])
            image_prefixes = bb.sample_prefix(z.to(bb.device), gens)
        else:
            image_prefixes = None
        sample = bb.sample_image(context, gens, image_prefixes)
        images = bb.decode_images(sample.tokens)
        self.timings["decode"] += time.perf_counter() - start
        scores = self._score(images, [s.prompt for s in rows])
        for i, state in enumerate(states):
            samples = []
            for r in range(i * k, (i + 1) * k):
                prefix = image_prefixes[r].cpu() if image_prefixes is not None else torch.zeros(0, dtype=torch.long)
                samples.append(Sample(text_prefixes[r], prefix, texts[r], images[r], float(scores.scores[r]), scores.details[r]))
            self._record(state, samples)

    def _text_prefix(self, state: PromptState) -> torch.Tensor:
        """Text prefix tokens from the text latents: argmax (reference) or a sample (rloo)."""
        if not self.uses_text:
            return torch.zeros(0, dtype=torch.long)
        with torch.no_grad():
            logits = self.backbone.text_logits(self.text_latents[state.slot].detach())
        if self.hparams.estimator == "reference":
            return logits.argmax(-1).cpu()
        probs = torch.softmax(logits, -1)
        return torch.multinomial(probs, 1, generator=state.generator)[:, 0].cpu()

    def _think_texts(self, rows: list[PromptState], prefixes: list[torch.Tensor]) -> list[str]:
        """Think text per row: the stage-0 text when text is not optimised, else the greedy
        continuation of each distinct prefix (decoded once, and not again while it is unchanged)."""
        if not self.uses_text:
            return [s.think_text for s in rows]
        keys = [(s.prompt.index, tuple(p.tolist())) for s, p in zip(rows, prefixes)]
        known = {(s.prompt.index, tuple(s.last.text_prefix.tolist())): s.last.text for s in rows}
        todo = list(dict.fromkeys(k for k in keys if k not in known))
        if todo:
            by_key = {k: (s, p) for k, s, p in zip(keys, rows, prefixes)}
            prompts = [by_key[k][0].prompt for k in todo]
            out = self.backbone.think([p.text for p in prompts], [by_key[k][1] for k in todo], prompt_rows=self._think_rows(prompts))
            known.update(zip(todo, out.texts))
        return [known[k] for k in keys]

    def _record(self, state: PromptState, samples: list[Sample]) -> None:
        chosen = max(samples, key=lambda s: s.reward)
        now = time.perf_counter()
        mean = sum(s.reward for s in samples) / len(samples)
        state.history.append(StepRecord(len(state.history), chosen.reward, chosen.text, now - state.step_started, mean, chosen.details))
        state.step_started = now
        state.samples, state.fresh = samples, True
        state.last = chosen
        if state.best is None or chosen.reward > state.best.reward:
            state.best = chosen
        self.scored.append(state)

    # ------------------------------------------------------------------ stopping, logging, loss
    def _apply_stop_rules(self, state: PromptState) -> None:
        threshold = self.hparams.reward_threshold
        if state.stop_reason is not None:
            return
        if threshold is not None and state.reward > threshold:
            self.stop_prompt(state, StopReason.THRESHOLD)
        elif state.step >= self.hparams.max_steps:
            self.stop_prompt(state, StopReason.MAX_STEPS)
        else:
            for callback in self.trainer.callbacks:
                hook = getattr(callback, "on_prompt_scored", None)
                if callable(hook) and state.stop_reason is None:
                    hook(self.trainer, self, state)

    def _log_rewards(self) -> None:
        if not self.scored:
            return
        rewards = torch.tensor([s.reward for s in self.scored])
        n = len(self.scored)
        self.log("reward/mean", rewards.mean(), on_step=False, on_epoch=True, batch_size=n)
        self.log("reward/min", rewards.min(), on_step=False, on_epoch=True, batch_size=n)
        self.log("reward/max", rewards.max(), on_step=False, on_epoch=True, batch_size=n)
        self.log("prompts/finished", float(len(self.finished)), on_step=False, on_epoch=True, batch_size=n)

    def _loss(self) -> torch.Tensor:
        """Sum over running prompts of their REINFORCE loss (a sum, so each prompt's gradient
        is the same whatever else is in the batch)."""
        bb, terms = self.backbone, []
        for state in self.active():
            samples, state.fresh = state.samples, False
            if len(samples) < 2 and self.hparams.estimator == "rloo":
                continue  # stage 0 has one sample: no leave-one-out baseline yet
            log_probs = torch.zeros(len(samples), device=self.device)
            if self.uses_text:
                logits = bb.text_logits(self.text_latents[state.slot])
                log_probs = log_probs + torch.stack([token_log_prob(logits, s.text_prefix.to(logits.device)) for s in samples])
            if self.uses_image:
                logits = bb.image_logits(self.image_latents[state.slot])
                log_probs = log_probs + torch.stack([token_log_prob(logits, s.image_prefix.to(logits.device)) for s in samples])
            loss = reinforce_loss(log_probs, torch.tensor([s.reward for s in samples]), self.hparams.estimator)
            if not torch.isfinite(loss):
                self.stop_prompt(state, StopReason.NONFINITE)
                continue
            terms.append(loss)
        if not terms:  # nothing to update this step; a graph-less zero keeps every gradient None
            return torch.zeros((), device=self.device, requires_grad=True)
        return torch.stack(terms).sum()
