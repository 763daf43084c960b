"""Frozen Janus-Pro behind the few operations MILR needs.

transformers' ``generate(generation_mode="image")`` cannot return hidden states or force a
prefix, so this module owns the decode loops: a KV-cached greedy loop for the think text and a
KV-cached classifier-free-guidance loop for image tokens. Both record the last-layer
(post-norm) hidden states, i.e. exactly the inputs of ``lm_head`` / ``generation_head`` that
MILR optimises, and both accept forced prefix tokens.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from PIL import Image
from transformers import DynamicCache, JanusForConditionalGeneration, StaticCache

from milr import prompts as chat_prompts
from milr.prompt_cache import PromptKV, assemble, last_hidden, left_padded_mask, split_rows

DTypeName = Literal["auto", "float32", "bfloat16", "float16"]
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TINY = "tiny"
SHAPES = "shapes"  # the trained Shapes model shipped in the package (milr/shapes/checkpoint)


class CheckpointError(RuntimeError):
    """A model checkpoint could not be loaded (missing locally and not downloadable)."""


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto``: this process's GPU (``LOCAL_RANK`` under torchrun, SLURM or Lightning's
    launcher), else the CPU."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(dtype: DTypeName | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[dtype]


@dataclass
class ThinkOutput:
    """Greedy think text per prompt. ``hidden[i]`` is ``[M_i, d]``: row t produced token t (the
    step that produced EOS is included, as in the reference); ``ids[i]`` excludes EOS."""

    ids: list[torch.Tensor]
    texts: list[str]
    hidden: list[torch.Tensor] | None


@dataclass
class ImageContext:
    """The [cond; uncond] prompt rows of a CFG image decode, prefilled and reusable.

    ``rows`` hold each prompt's prefilled KV (``image_rows``; a caller may keep them across
    steps, see ``milr.prompt_cache``); ``sample_image`` assembles its own cache from them, so one
    context serves many steps. ``last_hidden`` is the hidden state of the last position.
    """

    prompts: list[str]
    rows: list[PromptKV]
    mask: torch.Tensor  # [2B, T]
    positions: torch.Tensor  # [2B] next position id per row
    last_hidden: torch.Tensor  # [2B, d]


@dataclass
class ImageSample:
    """``tokens [B, N]``; ``hidden [B, R, 2, d]``: the (cond, uncond) hidden states that produced
    the first ``R`` tokens, when recorded (``record_hidden=R``)."""

    tokens: torch.Tensor
    hidden: torch.Tensor | None


class JanusBackbone:
    """Janus-Pro (``JanusForConditionalGeneration``) frozen for test-time latent optimisation.

    ``JanusBackbone("deepseek-community/Janus-Pro-7B")`` loads real weights;
    ``JanusBackbone("tiny", seed=0, grid=8)`` builds the offline random model used by tests and
    the demo. All weights have ``requires_grad=False`` and the model is in eval mode.

    Args:
        name_or_path: ``deepseek-community/Janus-Pro-1B`` / ``-7B``, a local checkpoint folder, ``shapes``
            (the trained Shapes model shipped in the package, loaded like any checkpoint) or ``tiny``.
        dtype: weight dtype: ``auto`` (bf16 on CUDA, fp32 on CPU), ``bfloat16``, ``float16`` or ``float32``.
        device: ``auto`` (CUDA when available, following LOCAL_RANK), ``cpu``, ``cuda`` or ``cuda:N``.
        seed: seed of the tiny random model's weights (``tiny`` only).
        grid: image-token grid side of the tiny model (``tiny`` only; images are 16·grid pixels).
        max_think_tokens: think-text budget in tokens (greedy, stops at EOS; the reference: 512).
        guidance_scale: classifier-free guidance weight of image sampling (the reference: 5.0).
        temperature: image-token sampling temperature (the reference: 1.0).
        static_cache: GPU fast path: a preallocated KV cache with fixed-shape decode steps.
        compile: also ``torch.compile`` the decode step (implies ``static_cache``).
    """

    def __init__(
        self,
        name_or_path: str = TINY,
        *,
        dtype: DTypeName = "auto",
        device: str = "auto",
        seed: int = 0,
        grid: int = 8,
        max_think_tokens: int = 512,
        guidance_scale: float = 5.0,
        temperature: float = 1.0,
        static_cache: bool = False,
        compile: bool = False,
        reuse_prompts: bool = True,
    ) -> None:
        target = resolve_device(device)
        if name_or_path == TINY:
            from milr.tiny import tiny_janus

            model, tokenizer = tiny_janus(seed=seed, grid=grid)
        else:
            model, tokenizer = _load_pretrained(name_or_path, resolve_dtype(dtype, target), target)
        self._attach(
            model, tokenizer, name_or_path, dtype=dtype, device=device, max_think_tokens=max_think_tokens,
            guidance_scale=guidance_scale, temperature=temperature, static_cache=static_cache, compile=compile,
            reuse_prompts=reuse_prompts,
        )

    @classmethod
    def from_model(cls, model: JanusForConditionalGeneration, tokenizer: Any, **options: Any) -> "JanusBackbone":
        """Wrap an already built model and tokenizer (e.g. random weights at the real shapes);
        ``options`` are the constructor's keyword options (dtype, device, max_think_tokens...)."""
        self = cls.__new__(cls)
        self._attach(model, tokenizer, getattr(model.config, "_name_or_path", "") or "custom", **options)
        return self

    def _attach(
        self,
        model: JanusForConditionalGeneration,
        tokenizer: Any,
        name_or_path: str,
        *,
        dtype: DTypeName = "auto",
        device: str = "auto",
        max_think_tokens: int = 512,
        guidance_scale: float = 5.0,
        temperature: float = 1.0,
        static_cache: bool = False,
        compile: bool = False,
        reuse_prompts: bool = True,
    ) -> None:
        self.name_or_path = name_or_path
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.max_think_tokens = max_think_tokens
        self.guidance_scale = guidance_scale
        self.temperature = temperature
        self.model: JanusForConditionalGeneration = model.to(device=self.device, dtype=self.dtype).eval()
        self.model.requires_grad_(False)
        check_tokenizer(tokenizer, model.generation_config, name_or_path)
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.pad_id = int(tokenizer.pad_token_id)
        self.bos_id = int(tokenizer.bos_token_id)
        self.eos_id = int(tokenizer.eos_token_id)
        self.boi_token = tokenizer.boi_token
        self.boi_id = int(tokenizer.convert_tokens_to_ids(self.boi_token))
        self.num_image_tokens = int(self.model.config.vision_config.num_image_tokens)
        self.set_fast_path(static_cache, compile)
        # a MILRModule keeps each prompt's prefilled think and image prompt across steps and
        # prefills only new or changed ones; False: the think prompt is prefilled at every think
        # decode and the image prompts whenever any of them changed (milr before per-prompt
        # caches, kept so the bench can time both in one run)
        self.reuse_prompts = reuse_prompts

    def set_fast_path(self, static_cache: bool, compile: bool) -> None:
        """GPU fast path: a preallocated KV cache gives the image loop fixed shapes, which is what
        torch.compile (and CUDA graphs under mode="reduce-overhead") need; ``compile`` implies it."""
        self.static_cache = static_cache or compile
        # dynamic=None: the first shape is compiled static; the first change (batch size, cache-length
        # bucket) recompiles once with those sizes symbolic, so refill and the tail of a run (batches
        # of every size) compile no further; CUDA graphs are still recorded per concrete shape
        self._step = torch.compile(self.lm, mode="reduce-overhead", dynamic=None) if compile else self.lm
        self._decode_cache: StaticCache | None = None  # see _cache_for_decode

    def to(self, device: str | torch.device) -> "JanusBackbone":
        """Move the frozen model (e.g. onto the device Lightning gave this process)."""
        self.device = resolve_device(device)
        self.model.to(self.device)
        self._decode_cache = None
        return self

    @classmethod
    def from_pretrained(cls, name_or_path: str, dtype: DTypeName = "auto", device: str = "auto", **kwargs) -> "JanusBackbone":
        """Load a real checkpoint, e.g. ``deepseek-community/Janus-Pro-7B`` (bf16 on GPU)."""
        return cls(name_or_path, dtype=dtype, device=device, **kwargs)

    @classmethod
    def tiny(cls, seed: int = 0, grid: int = 8, **kwargs) -> "JanusBackbone":
        """The offline random model (same classes, tiny shapes), deterministic in ``seed``."""
        return cls(TINY, seed=seed, grid=grid, **kwargs)

    # ------------------------------------------------------------------ properties
    @property
    def hidden_size(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    @property
    def lm(self):
        return self.model.model.language_model

    # ------------------------------------------------------------------ heads (the only differentiated part)
    def text_logits(self, z: torch.Tensor) -> torch.Tensor:
        """``lm_head`` on fp32 latents, cast (and moved) at the head; fp32 logits out."""
        return self.model.lm_head(z.to(device=self.device, dtype=self.dtype)).float()

    def image_logits(self, z: torch.Tensor) -> torch.Tensor:
        """CFG-fused generation-head logits for latents ``[..., 2, d]`` (cond, uncond), divided by T."""
        logits = self.model.model.generation_head(z.to(device=self.device, dtype=self.dtype)).float()
        cond, uncond = logits[..., 0, :], logits[..., 1, :]
        return (uncond + self.guidance_scale * (cond - uncond)) / self.temperature

    # ------------------------------------------------------------------ tokenisation
    def _left_pad(self, rows: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            if len(r):
                ids[i, width - len(r) :] = torch.as_tensor(list(r), dtype=torch.long)
                mask[i, width - len(r) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def encode(self, text: str, reserve: int = 0) -> list[int]:
        """Token ids with BOS; an error if they plus ``reserve`` generated tokens would not fit
        the model's context (an over-long prompt must fail clearly, not decode garbage)."""
        ids = self.tokenizer(text, add_special_tokens=True).input_ids
        limit = int(self.model.config.text_config.max_position_embeddings)
        if len(ids) + reserve > limit:
            raise ValueError(
                f"prompt too long: {len(ids)} tokens + {reserve} to generate exceed the model's "
                f"{limit}-token context (prompt starts {text[:60]!r})"
            )
        return ids

    def _forward(self, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache | StaticCache | None, step: bool = False, **inputs) -> torch.Tensor:
        """One language-model call; ``step=True`` marks the one-token image decode step (compiled
        when ``compile=True``)."""
        lm = self._step if step else self.lm
        extra = {}
        if isinstance(cache, StaticCache):
            # fixed shapes for the compiled step: the mask always spans the whole cache
            start = mask.shape[1] - positions.shape[1]
            extra["cache_position"] = torch.arange(start, mask.shape[1], device=mask.device)
            mask = torch.nn.functional.pad(mask, (0, cache.layers[0].max_cache_len - mask.shape[1]))
        out = lm(attention_mask=mask, position_ids=positions, cache=cache, use_cache=cache is not None, **inputs, **extra)
        return out.last_hidden_state

    # ------------------------------------------------------------------ prompt prefill
    def _prefill(self, mask: torch.Tensor, rows: int, **inputs) -> list[PromptKV]:
        """Prefill left-padded sequences in one batch and cut the cache into ``rows`` unpadded
        ``PromptKV`` (sequence ``s`` of row ``i`` at ``s · rows + i``)."""
        cache = DynamicCache()
        hidden = self._forward(mask, (mask.cumsum(-1) - 1).clamp(min=0), cache, **inputs)
        return split_rows(cache, mask, hidden, rows)

    @torch.no_grad()
    def think_rows(self, prompts: Sequence[str], reserve: int | None = None) -> list[PromptKV]:
        """``prompts`` (think prompts, already chat-formatted: ``milr.prompts.think_prompt``),
        prefilled (``think`` continues from them, and a caller may keep them across steps: see
        ``milr.prompt_cache``). ``reserve``: tokens to be generated after each (default
        ``max_think_tokens``), checked against the context."""
        reserve = self.max_think_tokens if reserve is None else reserve
        ids, mask = self._left_pad([self.encode(p, reserve=reserve) for p in prompts])
        return self._prefill(mask, len(prompts), input_ids=ids)

    # ------------------------------------------------------------------ think text
    @torch.no_grad()
    def think(
        self,
        prompts: Sequence[str],
        prefixes: Sequence[torch.Tensor] | None = None,
        *,
        max_new_tokens: int | None = None,
        record_hidden: bool = False,
        use_cache: bool = True,
        prompt_format: chat_prompts.PromptFormat = "janus",
        prompt_rows: Sequence[PromptKV] | None = None,
        generators: Sequence[torch.Generator] | None = None,
    ) -> ThinkOutput:
        """Greedy visualisation text for each prompt, after forcing ``prefixes[i]`` (token ids);
        with ``generators`` (one per prompt) each token is drawn from the model's distribution
        instead (temperature 1), e.g. for best-of-N over think texts.
        ``texts`` are decoded as is (no strip: whitespace is the prompt format's business).

        ``prompt_rows``: the prompts' prefilled think prompts (``think_rows`` of their
        ``think_prompt`` in ``prompt_format``), e.g. kept across steps so only the forced prefix is
        run through the model; prefilled here when not given.
        ``use_cache=False`` re-runs the whole sequence for every token, as the reference does;
        it exists for the benchmark.
        """
        max_new = self.max_think_tokens if max_new_tokens is None else max_new_tokens
        n = len(prompts)
        chat = [chat_prompts.think_prompt(p, prompt_format) for p in prompts]
        forced = [_until_eos(prefixes[i].tolist(), self.eos_id) if prefixes is not None else [] for i in range(n)]
        cache = DynamicCache() if use_cache else None
        if use_cache:
            rows = self.think_rows(chat, max_new) if prompt_rows is None else list(prompt_rows)
            if len(rows) != n:
                raise ValueError(f"{len(rows)} prefilled think prompts for {n} prompts")
            assemble(rows, cache)
            mask, h = left_padded_mask(rows, self.device), last_hidden(rows)
            if any(forced):  # [pads][prompt][pads][forced prefix]: masked pads keep every position id
                ids, forced_mask = self._left_pad(forced)
                mask = torch.cat([mask, forced_mask], 1)
                positions = (mask.cumsum(-1) - 1)[:, -ids.shape[1] :]
                out = self._forward(mask, positions, cache, input_ids=ids)[:, -1]
                h = torch.where(forced_mask[:, -1:].bool(), out, h)  # rows without a prefix: the prompt's last state
            positions = mask.sum(-1, keepdim=True) - 1
        else:
            base = [self.encode(c, reserve=max_new) for c in chat]
            ids, mask = self._left_pad([b + f for b, f in zip(base, forced)])
            h = self._forward(mask, (mask.cumsum(-1) - 1).clamp(min=0), None, input_ids=ids)[:, -1]
        generated: list[list[int]] = [[] for _ in range(n)]
        hidden: list[list[torch.Tensor]] = [[] for _ in range(n)]
        # a forced prefix that contains EOS ends the text there
        done = [prefixes is not None and len(f) < len(prefixes[i]) for i, f in enumerate(forced)]
        for _ in range(max_new):
            logits = self.model.lm_head(h)
            if generators is None:
                token = logits.argmax(-1)
            else:
                probs = torch.softmax(logits.float(), -1)
                token = torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(generators)])
            chosen = token.tolist()  # one device sync per step
            for i in range(n):
                if done[i] or len(forced[i]) + len(generated[i]) >= max_new:
                    done[i] = True
                    continue
                if record_hidden:
                    hidden[i].append(h[i].float())
                if chosen[i] == self.eos_id:
                    done[i] = True
                else:
                    generated[i].append(chosen[i])
            if all(done):
                break
            finished = torch.tensor(done, device=token.device)
            token = torch.where(finished, torch.full_like(token, self.pad_id), token)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if use_cache:
                positions = positions[:, -1:] + 1
                h = self._forward(mask, positions, cache, input_ids=token[:, None])[:, -1]
            else:
                ids = torch.cat([ids, token[:, None]], dim=1)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                h = self._forward(mask, positions, None, input_ids=ids)[:, -1]
        all_ids = [torch.tensor(f + g, dtype=torch.long) for f, g in zip(forced, generated)]
        texts = [self.tokenizer.decode(t.tolist(), skip_special_tokens=True) for t in all_ids]
        return ThinkOutput(
            ids=all_ids,
            texts=texts,
            hidden=[torch.stack(h) if h else torch.zeros(0, self.hidden_size, device=self.device) for h in hidden] if record_hidden else None,
        )

    # ------------------------------------------------------------------ image tokens
    @torch.no_grad()
    def image_rows(self, prompts: Sequence[str]) -> list[PromptKV]:
        """Tokenise ``prompts`` (already chat-formatted) + ``<begin_of_image>`` into [cond; uncond]
        sequences and prefill them in one batch: one (cond, uncond) ``PromptKV`` per prompt.
        Unconditional rows keep only BOS and ``<begin_of_image>``; every other real token becomes
        pad (the reference's and transformers' construction)."""
        rows = [self.encode(p + self.boi_token, reserve=self.num_image_tokens) for p in prompts]
        cond, mask = self._left_pad(rows)
        keep = (cond == self.bos_id) | (cond == self.boi_id) | (mask == 0)
        uncond = torch.where(keep, cond, torch.full_like(cond, self.pad_id))
        embeds = self.model.get_input_embeddings()(torch.cat([cond, uncond]))
        return self._prefill(torch.cat([mask, mask]), len(prompts), inputs_embeds=embeds)

    def image_context(self, prompts: Sequence[str], rows: Sequence[PromptKV] | None = None) -> ImageContext:
        """The decode context of ``prompts``: their prefilled ``rows`` (``image_rows``, e.g. kept
        across steps by the caller), prefilled here when not given."""
        rows = self.image_rows(prompts) if rows is None else list(rows)
        if len(rows) != len(prompts):
            raise ValueError(f"{len(rows)} prefilled image prompts for {len(prompts)} prompts")
        mask = left_padded_mask(rows, self.device)
        return ImageContext(list(prompts), rows, mask, mask.sum(-1), last_hidden(rows))

    def _cache_for_decode(self, context: ImageContext) -> DynamicCache | StaticCache:
        """The context's rows assembled into the cache one image decode extends (the rows are
        never written to). A static cache is refilled in place: the compiled step then always
        reads and writes the same tensors, and CUDA graphs replay only at fixed addresses. It is
        reallocated only when the shape changes."""
        if not self.static_cache:
            return assemble(context.rows, DynamicCache())
        # lengths rounded up to a multiple of 128: prompts of similar length share one compiled step
        length = -(-(context.mask.shape[1] + self.num_image_tokens) // 128) * 128
        work = self._decode_cache
        if work is None or (work.layers[0].keys.shape[0], work.layers[0].max_cache_len) != (context.mask.shape[0], length):
            self._decode_cache = None  # free the old one before allocating
            self._decode_cache = work = StaticCache(config=self.model.config.text_config, max_cache_len=length)
        else:
            work.reset()
        return assemble(context.rows, work)

    def _sample(self, logits: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
        probs = torch.softmax(logits.float(), dim=-1)
        return torch.cat([torch.multinomial(probs[i : i + 1], 1, generator=g)[:, 0] for i, g in enumerate(generators)])

    def sample_prefix(self, z: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
        """Sample image tokens from the CFG distribution of latents ``z [B, L, 2, d]`` → ``[B, L]``."""
        with torch.no_grad():
            logits = self.image_logits(z.detach())
        b, length = logits.shape[:2]
        if length == 0:
            return torch.zeros(b, 0, dtype=torch.long, device=self.device)
        flat = self._sample(logits.reshape(b * length, -1), [g for g in generators for _ in range(length)])
        return flat.view(b, length)

    @torch.no_grad()
    def sample_image(
        self,
        context: ImageContext,
        generators: Sequence[torch.Generator | None],
        prefix: torch.Tensor | None = None,
        *,
        record_hidden: int = 0,
    ) -> ImageSample:
        """CFG-sample the image tokens after the forced ``prefix [B, L]`` (temperature, guidance
        from the backbone), recording the hidden states of the first ``record_hidden`` positions
        (only MILR's latent prefix needs them). The context's rows are never modified."""
        b = len(context.prompts)
        n = self.num_image_tokens
        cache = self._cache_for_decode(context)
        mask, pos = context.mask, context.positions
        tokens = torch.zeros(b, n, dtype=torch.long, device=self.device)
        start = 0 if prefix is None else prefix.shape[1]
        if record_hidden and start:
            raise ValueError("hidden states are recorded only for decodes without a forced prefix")
        hidden = torch.zeros(b, record_hidden, 2, self.hidden_size, dtype=torch.float32, device=self.device)
        if start:
            tokens[:, :start] = prefix
            embeds = self.model.prepare_embeddings_for_image_generation(torch.cat([prefix, prefix]))
            mask = torch.cat([mask, torch.ones(2 * b, start, dtype=mask.dtype, device=mask.device)], 1)
            positions = pos[:, None] + torch.arange(start, device=pos.device)
            h = self._forward(mask, positions, cache, inputs_embeds=embeds)[:, -1]
            pos = pos + start
        else:
            h = context.last_hidden
        for j in range(start, n):
            if j < record_hidden:
                hidden[:, j, 0], hidden[:, j, 1] = h[:b].float(), h[b:].float()
            logits = self.model.model.generation_head(h).float()
            fused = (logits[b:] + self.guidance_scale * (logits[:b] - logits[b:])) / self.temperature
            token = self._sample(fused, generators)
            tokens[:, j] = token
            if j == n - 1:
                break
            embeds = self.model.prepare_embeddings_for_image_generation(torch.cat([token, token])[:, None])
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            h = self._forward(mask, pos[:, None], cache, step=True, inputs_embeds=embeds)[:, -1]
            pos = pos + 1
        return ImageSample(tokens=tokens, hidden=hidden if record_hidden else None)

    @torch.no_grad()
    def decode_images(self, tokens: torch.Tensor) -> list[Image.Image]:
        """VQ-decode ``[B, N]`` image tokens to PIL RGB images."""
        pixels = self.model.model.vqmodel.decode(tokens.to(self.device)).float()
        pixels = ((pixels.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(p) for p in pixels]


def _until_eos(tokens: list[int], eos_id: int) -> list[int]:
    return tokens[: tokens.index(eos_id)] if eos_id in tokens else tokens


def is_local_path(name_or_path: str) -> bool:
    """A hub id is ``org/name`` (or a bare ``name``); anything else (``/…``, ``./…``, ``~/…``,
    ``a/b/c``) or an existing path is a local folder."""
    return name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1 or Path(name_or_path).expanduser().exists()


CONVERTED = "deepseek-community/Janus-Pro-1B or deepseek-community/Janus-Pro-7B"
ROUND_TRIP = "a photo of a red apple next to two blue cups"


def download_hint(hub_id: str, folder: str | None = None) -> str:
    """The command that fetches a checkpoint (huggingface_hub 2.x installs ``hf``, not ``huggingface-cli``)."""
    return f"`hf download {hub_id}" + (f" --local-dir {folder}`" if folder else "`")


def check_checkpoint(name_or_path: str) -> None:
    """Refuse, before any weight is read, a local folder that does not exist or whose
    ``config.json`` is not a transformers Janus checkpoint (deepseek-ai's original layout says
    ``multi_modality``; transformers would build a default-sized random model from it), and a
    ``shapes`` model that was never trained into the package."""
    if name_or_path == SHAPES and not Path(resolve_checkpoint(SHAPES)).is_dir():
        raise CheckpointError(
            f"the Shapes model is not in this installation ({resolve_checkpoint(SHAPES)}): train it with "
            f"`python -m milr.shapes.train --out {resolve_checkpoint(SHAPES)}` (docs/shapes.md)"
        )
    name_or_path = resolve_checkpoint(name_or_path)
    if name_or_path == TINY or not is_local_path(name_or_path):
        return
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        raise CheckpointError(
            f"checkpoint folder not found: {name_or_path} (give a folder holding config.json, the safetensors and the "
            f"tokenizer — {download_hint('deepseek-community/Janus-Pro-7B', name_or_path)} makes one — "
            "or a hub id such as deepseek-community/Janus-Pro-7B)"
        )
    config = folder / "config.json"
    if config.is_file():
        check_model_type(json.loads(config.read_text()).get("model_type"), name_or_path)


def check_model_type(model_type: Any, name_or_path: str) -> None:
    if model_type != "janus":
        raise CheckpointError(
            f"{name_or_path} is not a transformers Janus checkpoint (config.json says model_type {model_type!r}, "
            f"not 'janus'; deepseek-ai/Janus-Pro's own layout is 'multi_modality'): use the converted {CONVERTED}, "
            f"e.g. {download_hint('deepseek-community/Janus-Pro-7B')}"
        )


def resolve_checkpoint(name_or_path: str) -> str:
    """``shapes`` names the folder shipped in the package; anything else is passed on unchanged."""
    if name_or_path == SHAPES:
        from milr.shapes import CHECKPOINT

        return str(CHECKPOINT)
    return name_or_path


def _load_pretrained(name_or_path: str, dtype: torch.dtype, device: torch.device):
    """Load a Janus checkpoint with transformers straight onto ``device`` in ``dtype`` (no fp32
    host copy); a missing or foreign checkpoint is a clear error before any weight is read."""
    from transformers import AutoTokenizer, JanusConfig

    check_checkpoint(name_or_path)  # before resolving: a missing Shapes model names its training command
    name_or_path = resolve_checkpoint(name_or_path)
    try:
        raw, _ = JanusConfig.get_config_dict(name_or_path)
        check_model_type(raw.get("model_type"), name_or_path)
        config = JanusConfig.from_pretrained(name_or_path)
        # the converted checkpoints have their own lm_head and no tie_word_embeddings key, which
        # transformers defaults to True: a later tie_weights() would overwrite lm_head
        if "tie_word_embeddings" not in raw:
            config.tie_word_embeddings = False
        model = JanusForConditionalGeneration.from_pretrained(
            name_or_path, config=config, dtype=dtype, device_map=str(device),
            attn_implementation="sdpa",  # PyTorch's fused attention kernels (flash / memory-efficient on GPU)
            use_kernels=False,  # milr's own decode loops are what is tested; transformers >= 5.25 would fetch hub kernels
        )
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hub_id = "deepseek-community/Janus-Pro-7B" if is_local_path(name_or_path) else name_or_path
        raise CheckpointError(
            f"Could not load the Janus checkpoint {name_or_path!r}"
            + (" (HF_HUB_OFFLINE=1, so nothing is downloaded)" if offline else "")
            + f". Download it once with {download_hint(hub_id)} on a machine with internet "
            f"access (Janus-Pro: {CONVERTED}), or pass a local directory that "
            f"holds config.json, the safetensors and the tokenizer. Original error: {err}"
        ) from err
    return model, tokenizer


def check_tokenizer(tokenizer: Any, generation_config: Any, name: str) -> None:
    """A tokenizer that loses spaces (a byte-level one loaded as the wrong class) or pads with
    another id than the model's generation config would give wrong prompts and CFG rows silently."""
    ids = tokenizer.encode(ROUND_TRIP, add_special_tokens=False)
    back = tokenizer.decode(ids, skip_special_tokens=True)
    if back != ROUND_TRIP:
        raise CheckpointError(f"the tokenizer of {name} does not round-trip text: {ROUND_TRIP!r} came back as {back!r}")
    pad = getattr(generation_config, "pad_token_id", None)
    if pad is not None and int(pad) != int(tokenizer.pad_token_id):
        raise CheckpointError(
            f"the tokenizer of {name} pads with id {tokenizer.pad_token_id} but its generation_config.json says "
            f"pad_token_id {pad}: the CFG unconditional rows would be wrong; use the tokenizer saved with the model"
        )
