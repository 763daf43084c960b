"""Decoding: what the frozen backbone makes of each prompt and its latents.

``Decoder.first`` is stage 0 of new prompts: think text, initial image and the hidden states
their latents start from. ``Decoder.candidates`` decodes a later step's candidates from the
current latents (text prefix → think text → image prompt → forced image prefix → image), or for
best-of-N a fresh image from the stage-0 image prompt. ``Decoder.log_probs`` is what the loss
differentiates: the log-probability of the prefixes a step used under the latents, through the
two heads only. Each prompt's prefilled think and image prompts are kept across steps
(``milr.prompt_cache``) until ``release``; a restored prompt has none: its rows are prefilled
when it is first decoded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image

from data.prompt import Prompt
from milr.backbone import ImageContext, JanusBackbone, ThinkOutput
from milr.objective import prefix_length, token_log_prob
from milr.options import MILROptions
from milr.plan import Plan
from milr.prompt_cache import PromptCache
from milr.prompts import image_prompt, think_prompt, think_text
from milr.slots import LatentSlots
from milr.state import Answer, PromptState, Sample
from milr.timings import Timings


def prompt_seed(seed: int, index: int, repeat: int = 0) -> int:
    """Each prompt's (and repeat's) own seed: results do not depend on run order or batch composition."""
    return (seed * 1_000_003 + index + repeat * 1_000_000_007) % (2**62)


def no_tokens() -> torch.Tensor:
    """The prefix of a latent group that is not optimised."""
    return torch.zeros(0, dtype=torch.long)


@dataclass
class Draft:
    """A decoded candidate before its reward: the prefix tokens it used, its think text and image."""

    text_prefix: torch.Tensor
    image_prefix: torch.Tensor
    text: str
    image: Image.Image

    def scored(self, answer: Answer) -> Sample:
        return Sample(self.text_prefix, self.image_prefix, self.text, self.image, *answer)


@dataclass
class FirstDraft(Draft):
    """A new prompt's stage-0 draft, with its generator and the hidden states its latents start from."""

    generator: torch.Generator
    z_t: torch.Tensor | None
    z_v: torch.Tensor | None
    started: float


class Decoder:
    """The backbone's decodes for the module, under ``plan``, from the latents in ``latents``."""

    def __init__(self, backbone: JanusBackbone, plan: Plan, latents: LatentSlots, options: MILROptions, timings: Timings) -> None:
        self.backbone, self.plan, self.latents, self.timings = backbone, plan, latents, timings
        self.format, self.text_ratio, self.seed = options.prompt_format, options.text_ratio, options.seed
        self.think_prompts = PromptCache(backbone.think_rows, "rows" if backbone.reuse_prompts else "never")
        self.image_prompts = PromptCache(backbone.image_rows, "rows" if backbone.reuse_prompts else "batch")

    def first(self, prompts: Sequence[Prompt]) -> list[FirstDraft]:
        """Stage 0: think text (none in the authors' image mode), the initial image, and the latents' start."""
        bb, plan = self.backbone, self.plan
        start = time.perf_counter()
        with self.timings.phase("decode"):
            if plan.think_in_image:
                think = self._think(prompts, record_hidden=plan.uses_text)
                texts = think.texts
            else:  # the authors' image mode: no think text at all
                think, texts = None, [""] * len(prompts)
            generators = [torch.Generator(device=bb.device).manual_seed(prompt_seed(self.seed, p.index, p.repeat)) for p in prompts]
            context = self._image_context(prompts, [self._image_prompt(p, t, regeneration=False) for p, t in zip(prompts, texts)])
            sample = bb.sample_image(context, generators, record_hidden=plan.image_prefix_len)
            images = bb.decode_images(sample.tokens)
        drafts = []
        for j, generator in enumerate(generators):
            z_t = think.hidden[j][: prefix_length(self.text_ratio, len(think.hidden[j]))] if plan.uses_text else None
            text_prefix = bb.text_logits(z_t).argmax(-1).cpu() if z_t is not None else no_tokens()
            image_prefix = sample.tokens[j, : plan.image_prefix_len].cpu()
            z_v = sample.hidden[j] if plan.uses_image else None
            drafts.append(FirstDraft(text_prefix, image_prefix, texts[j], images[j], generator, z_t, z_v, start))
        return drafts

    def candidates(self, states: list[PromptState]) -> list[Draft]:
        """``plan.k`` candidates per prompt, its rows together in the order of ``states``: from its
        current latents, or (best-of-N) one fresh image from its stage-0 image prompt (or from a fresh
        sampled think text, ``best_of_n_think: sample``), no prefix."""
        bb, plan = self.backbone, self.plan
        rows = [s for s in states for _ in range(plan.k)]
        with self.timings.phase("decode"):
            for s in rows:
                s.decoded_images += 1
            gens = [s.generator for s in rows]
            if plan.from_latents:
                text_prefixes = [self._text_prefix(s) for s in rows]
                texts = self._think_texts(rows, text_prefixes)
            else:
                text_prefixes, texts = [no_tokens()] * len(rows), [s.think_text for s in rows]
                if plan.sample_think:
                    texts = self._think([s.prompt for s in rows], generators=gens).texts
            chat = [self._image_prompt(s.prompt, t, regeneration=plan.from_latents) for s, t in zip(rows, texts)]
            context = self._image_context([s.prompt for s in rows], chat)
            if plan.uses_image and plan.from_latents:
                z = torch.stack([self.latents.image[s.slot] for s in rows])
                image_prefixes = bb.sample_prefix(z.to(bb.device), gens)
            else:
                image_prefixes = None
            sample = bb.sample_image(context, gens, image_prefixes)
            images = bb.decode_images(sample.tokens)
        prefixes = [p.cpu() for p in image_prefixes] if image_prefixes is not None else [no_tokens()] * len(rows)
        return [Draft(*row) for row in zip(text_prefixes, prefixes, texts, images)]

    def log_probs(self, state: PromptState) -> torch.Tensor:
        """``log π`` of each of ``state.samples``' prefixes under its slot's latents, summed over
        the groups the step order moves after its step → ``[K]``: ``log softmax(lm_head(z_t))``
        and ``log softmax((u + w(c − u)) / T)`` of the image prefix (or of the latents' argmax
        tokens, ``image_loss_tokens='argmax'``)."""
        groups, samples = self.plan.schedule.groups(state.step), state.samples
        log_probs = torch.zeros(len(samples), device=self.latents.of(state.slot)[0].device)
        if "text" in groups:
            logits = self.backbone.text_logits(self.latents.text[state.slot])
            log_probs = log_probs + torch.stack([token_log_prob(logits, s.text_prefix.to(logits.device)) for s in samples])
        if "image" in groups:
            logits = self.backbone.image_logits(self.latents.image[state.slot])
            if self.plan.argmax_image_loss:
                tokens = [logits.detach().argmax(-1)] * len(samples)
            else:
                tokens = [s.image_prefix.to(logits.device) for s in samples]
            log_probs = log_probs + torch.stack([token_log_prob(logits, t) for t in tokens])
        return log_probs

    def release(self, prompt: Prompt) -> None:
        """Drop the prompt's cached think and image prompt rows (it left its slot)."""
        self.think_prompts.release(prompt.uid)
        self.image_prompts.release(prompt.uid)

    def _text_prefix(self, state: PromptState) -> torch.Tensor:
        """Text prefix tokens from the text latents: argmax (reference) or a sample (rloo)."""
        if not self.plan.uses_text:
            return no_tokens()
        with torch.no_grad():
            logits = self.backbone.text_logits(self.latents.text[state.slot].detach())
        if not self.plan.sample_text_prefix:
            return logits.argmax(-1).cpu()
        probs = torch.softmax(logits, -1)
        return torch.multinomial(probs, 1, generator=state.generator)[:, 0].cpu()

    def _think_texts(self, rows: list[PromptState], prefixes: list[torch.Tensor]) -> list[str]:
        """Think text per row: the stage-0 text when text is not optimised, else the greedy
        continuation of each distinct prefix (decoded once, and not again while it is unchanged)."""
        if not self.plan.uses_text:
            return [s.think_text for s in rows]
        keys = [(s.prompt.index, tuple(p.tolist())) for s, p in zip(rows, prefixes)]
        known = {(s.prompt.index, tuple(s.last.text_prefix.tolist())): s.last.text for s in rows}
        todo = list(dict.fromkeys(k for k in keys if k not in known))
        if todo:
            by_key = {k: (s, p) for k, s, p in zip(keys, rows, prefixes)}
            out = self._think([by_key[k][0].prompt for k in todo], [by_key[k][1] for k in todo])
            known.update(zip(todo, out.texts))
        return [known[k] for k in keys]

    def _think(
        self, prompts: Sequence[Prompt], prefixes: list[torch.Tensor] | None = None, record_hidden: bool = False,
        generators: Sequence[torch.Generator] | None = None,
    ) -> ThinkOutput:
        """Greedy think text of ``prompts`` (after forced ``prefixes``), or sampled with ``generators``;
        the think prompts are kept per prompt only when text is optimised (mode image thinks once, at admission)."""
        fmt = self.format
        with self.timings.phase("think"):
            rows = self.think_prompts.rows([p.uid for p in prompts], [think_prompt(p.text, fmt) for p in prompts]) if self.plan.uses_text else None
            out = self.backbone.think([p.text for p in prompts], prefixes, record_hidden=record_hidden, prompt_format=fmt, prompt_rows=rows,
                                      generators=generators)
            out.texts = [think_text(t, fmt) for t in out.texts]
        return out

    def _image_context(self, prompts: Sequence[Prompt], chat: list[str]) -> ImageContext:
        """Prefilled [cond; uncond] rows of the image prompts ``chat``; a row is prefilled only when
        its prompt is new or its image prompt changed (its think text, or stage 0's prompt against
        the re-generation one; mode ``image`` keeps it: prefilled once)."""
        return self.backbone.image_context(chat, self.image_prompts.rows([p.uid for p in prompts], chat))

    def _image_prompt(self, prompt: Prompt, think: str, regeneration: bool) -> str:
        """The chat-formatted image prompt of one row (``regeneration``: a step after stage 0)."""
        text_mode = regeneration and not self.plan.uses_image  # the authors' text-mode re-generation
        return image_prompt(prompt.text, think if self.plan.think_in_image else None, self.format, text_regeneration=text_mode)
