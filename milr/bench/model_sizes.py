"""Model shapes for the benchmark: Janus-Pro's real sizes and a mid-size CPU one, random weights.

Timing does not depend on weight values, only on shapes, so every shape here is built as a
randomly initialised ``JanusForConditionalGeneration`` (the same classes as the checkpoints)
directly on the target device and dtype: no download, and no fp32 copy of a 7B model on the host.
``tiny`` is ``milr.tiny``'s test model; ``small`` is big enough that the heads and the KV cache
cost what they cost at real size, yet runs on a laptop CPU; ``1b`` / ``7b`` are Janus-Pro-1B /
-7B (DeepSeek-LLM 1.3B / 7B, 24×24 image tokens, 16384-code VQ with the real decoder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import JanusConfig, JanusForConditionalGeneration, PreTrainedTokenizerFast

from milr.backbone import JanusBackbone, resolve_device, resolve_dtype
from milr.tiny import IMAGE_TOKENS, tiny_tokenizer

PATCH = 16  # pixels per image token side (Janus-Pro's VQ downsamples 16×)


@dataclass(frozen=True)
class Shape:
    """A Janus model shape plus the bench defaults that keep it within a sensible run time."""

    name: str
    text: dict[str, Any] = field(default_factory=dict)  # Llama config (empty: milr.tiny's model)
    vision: dict[str, Any] = field(default_factory=dict)  # understanding encoder (unused by MILR, but it takes memory)
    vq: dict[str, Any] = field(default_factory=dict)
    grid: int = 8  # image tokens per side
    batch: int = 4
    steps: int = 3
    think_tokens: int = 16
    prompts: int = 8  # prompts in the throughput runs

    @property
    def image_tokens(self) -> int:
        return self.grid * self.grid


def llama_config(hidden: int, layers: int, heads: int, intermediate: int, vocab: int) -> dict[str, Any]:
    """A DeepSeek-LLM-style Llama text config (multi-head attention, 16k context)."""
    return {
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "max_position_embeddings": 16384,
        "rms_norm_eps": 1e-6,
    }


# Janus-Pro's SigLIP-L understanding encoder and VQ-16 decoder: the transformers defaults.
_REAL_VISION: dict[str, Any] = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16}
_REAL_VQ: dict[str, Any] = {
    "num_embeddings": 16384,
    "base_channels": 128,
    "channel_multiplier": [1, 1, 2, 2, 4],
    "latent_channels": 256,
}

SHAPES: dict[str, Shape] = {
    "tiny": Shape("tiny", grid=8, batch=4, steps=3, think_tokens=16),
    "small": Shape(
        "small",
        text=llama_config(hidden=512, layers=8, heads=8, intermediate=1408, vocab=32000),
        vision={"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2},
        # the real 5-level VQ decoder at half its channels: 16×16 tokens → 256 px
        vq={**_REAL_VQ, "base_channels": 64},
        grid=16,
        batch=2,
        steps=2,
        think_tokens=16,
        prompts=2,
    ),
    # Janus-Pro-1B / -7B: DeepSeek-LLM 1.3B / 7B, 24×24 image tokens, 384 px
    "1b": Shape("1b", llama_config(2048, 24, 16, 5632, 102400), _REAL_VISION, _REAL_VQ, grid=24, batch=8, steps=2, think_tokens=64),
    "7b": Shape("7b", llama_config(4096, 30, 32, 11008, 102400), _REAL_VISION, _REAL_VQ, grid=24, batch=8, steps=2, think_tokens=64),
}


def janus_config(shape: Shape) -> JanusConfig:
    """The ``JanusConfig`` of a non-tiny shape (untied ``lm_head``, as in DeepSeek-LLM)."""
    if not shape.text:
        raise ValueError("the tiny shape is built by milr.tiny, not from a config here")
    hidden = shape.text["hidden_size"]
    return JanusConfig(
        text_config=shape.text,
        vision_config={
            **shape.vision,
            "image_size": shape.grid * PATCH,
            "patch_size": PATCH,
            "projection_dim": hidden,
            "num_image_tokens": shape.image_tokens,
        },
        vq_config={**shape.vq, "projection_dim": hidden, "image_token_embed_dim": hidden},
        tie_word_embeddings=False,
    )


def padded_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """``milr.tiny``'s tokenizer plus one filler token per remaining id of the model's vocabulary,
    so a random model's think text decodes and re-encodes to as many tokens as it generated (the
    image prompt then has its real length)."""
    tokenizer = tiny_tokenizer()
    tokenizer.add_tokens([f"<t{i}>" for i in range(len(tokenizer), vocab_size)])
    return tokenizer


def random_backbone(shape: Shape, *, device: str = "cpu", dtype: str = "auto", seed: int = 0, **options: Any) -> JanusBackbone:
    """A ``JanusBackbone`` with random weights of ``shape``, built on ``device`` in its dtype.

    ``options`` go to ``JanusBackbone`` (``max_think_tokens``, ``compile``, ``static_cache``…).
    """
    if not shape.text:
        return JanusBackbone.tiny(seed=seed, grid=shape.grid, device=device, dtype=dtype, **options)
    target = resolve_device(device)
    config = janus_config(shape)
    torch.manual_seed(seed)
    with torch.device(target):
        model = JanusForConditionalGeneration._from_config(config, dtype=resolve_dtype(dtype, target))
    tokenizer = padded_tokenizer(shape.text["vocab_size"])
    model.config.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["image_token"])
    return JanusBackbone.from_model(model, tokenizer, device=device, dtype=dtype, **options)


def parameter_count(shape: Shape) -> int:
    """Parameters of a non-tiny shape, counted on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        model = JanusForConditionalGeneration(janus_config(shape))
    return sum(p.numel() for p in model.parameters())
