"""A tiny, randomly initialised Janus and a tokenizer built offline: the test and demo path.

Same transformers classes as Janus-Pro, so every code path that runs here runs on the real
checkpoints. Random weights give near-uniform head distributions and near-constant decoded
colours (docs/method.md), so the heads are sharpened by a fixed factor to give the sampler
something to choose between.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import JanusConfig, JanusForConditionalGeneration, PreTrainedTokenizerFast

SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<bos>",
    "eos_token": "<eos>",
}
IMAGE_TOKENS = {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"}

_CORPUS = """a photo of a red apple and a blue cup on a wooden table
a green bird sitting left of a yellow banana under the white sky
two black dogs and three brown cats playing with an orange ball
a purple flower in a pink vase next to a gray stone
You are a helpful assistant that receives an image prompt and generate a visualization of the prompt.
You are asked to generate an image based on this prompt. Provide a brief, precise visualization of all
elements in the prompt. Your description should include every object mentioned in the prompt, specify
visual attributes (color, number, shape, texture) if specified in the prompt, clarify relationships
(e.g., spatial) between objects if specified in the prompt, be concise (50 words or less), focus only on
what's explicitly stated in the prompt. Do not elaborate beyond the attributes or relationships.
Do not miss objects. Output your visualization directly without explanation: User Assistant
"""


def tiny_tokenizer(vocab_size: int = 384) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on a fixed corpus: deterministic, offline, Janus-compatible specials."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = list(SPECIAL_TOKENS.values()) + list(IMAGE_TOKENS.values()) + ["<|User|>", "<|Assistant|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_CORPUS.splitlines() * 4, trainer=trainer)
    bos = SPECIAL_TOKENS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        padding_side="left",
        extra_special_tokens=IMAGE_TOKENS,
        **SPECIAL_TOKENS,
    )
    return fast


def tiny_config(vocab_size: int, grid: int = 8, hidden: int = 64, layers: int = 2) -> JanusConfig:
    """A Janus config small enough for CPU tests; ``grid`` image tokens per side (decoded side = 16·grid
    for the 5-level VQ decoder, 4·grid for the 3-level one used when ``grid`` ≥ 8 would be too slow)."""
    patch = 16
    return JanusConfig(
        text_config={
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": hidden,
            "intermediate_size": 2 * hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": grid * patch,
            "patch_size": patch,
            "projection_dim": hidden,
            "num_image_tokens": grid * grid,
        },
        vq_config={
            "embed_dim": 8,
            "num_embeddings": 256,
            "latent_channels": 32,
            "base_channels": 32,
            "channel_multiplier": [1, 1, 2],
            "num_res_blocks": 1,
            "projection_dim": hidden,
            "image_token_embed_dim": hidden,
        },
    )


def tiny_janus(seed: int = 0, grid: int = 8, head_scale: float = 10.0) -> tuple[JanusForConditionalGeneration, PreTrainedTokenizerFast]:
    """Build the tiny model and tokenizer from ``seed``; identical for identical arguments."""
    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = JanusForConditionalGeneration(tiny_config(len(tokenizer), grid=grid))
        with torch.no_grad():
            # sharpen the heads (docs/method.md): default init gives uniform token distributions
            model.model.generation_head.vision_head.weight.mul_(head_scale)
    model.config.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKENS["image_token"])
    return model.eval(), tokenizer
