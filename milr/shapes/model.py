"""The Shapes model's tokenizer and Janus config: the same transformers classes as Janus-Pro, sized
to train on two CPU cores.

The tokenizer is a byte-level BPE trained offline on a fixed, seeded corpus of the pipeline's own
strings (the think prompt, plans, image prompts, both prompt formats), so every Shapes word is one
token and text with spaces round-trips; each plan clause (``" red circle at a1."``) is one added token. The image vocabulary is the world's exact patch codes
(``world.CODES``); the VQ decoder upsamples 8 × 8 tokens by 8 to the 64 px canvas.
"""

from __future__ import annotations

import random

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import JanusConfig, PreTrainedTokenizerFast

from milr import prompts as chat
from milr.shapes import prompts, world

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<bos>", "eos_token": "<eos>"}
IMAGE_TOKENS = {"image_token": "<image_placeholder>", "boi_token": "<begin_of_image>", "eoi_token": "<end_of_image>"}
ROLE_TOKENS = list(chat.JANUS_ROLES)
VOCAB = 640
#: one plan-clause token per (cell, colour, shape), in this order after the BPE vocabulary
CLAUSE_OBJECTS = tuple(
    world.Obj((c, r), color, shape) for r in range(world.GRID) for c in range(world.GRID) for color in world.COLORS for shape in world.SHAPES
)


def corpus(samples: int = 600, seed: int = 0) -> list[str]:
    """The tokenizer's training text: every string the pipeline sends or the model writes, for
    ``samples`` seeded prompts of every tag."""
    rng = random.Random(seed)
    lines = []
    for _ in range(samples):
        meta = prompts.make_prompt(rng.choice(prompts.TAGS), rng)
        plan = prompts.plan_text(prompts.scene(meta, rng))
        for fmt in chat.PROMPT_FORMATS:
            lines += [chat.think_prompt(meta["prompt"], fmt), chat.image_prompt(meta["prompt"], plan, fmt)]
        lines.append(" " + plan)
    return lines


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Deterministic: the same corpus and trainer settings give the same vocabulary."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = list(SPECIAL_TOKENS.values()) + list(IMAGE_TOKENS.values()) + ROLE_TOKENS
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    # every plan clause with its leading space (" red circle at a1.") is one token: the drawing turn
    # then finds what to paint at a position with one attention look-up, the clause naming its cell
    # (with a token per word, five trainings learned where objects go but not what: docs/shapes.md);
    # the decoded text is the same words either way
    tok.add_tokens([AddedToken(" " + prompts.clause(o), normalized=False) for o in CLAUSE_OBJECTS])
    bos = SPECIAL_TOKENS["bos_token"]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, padding_side="left", extra_special_tokens=IMAGE_TOKENS, model_max_length=1024, **SPECIAL_TOKENS
    )


def build_config(vocab_size: int, hidden: int = 192, layers: int = 4, heads: int = 6, code_dim: int = 8) -> JanusConfig:
    """A small Janus: Llama text model, an (unused, untrained) tiny SigLIP tower whose geometry gives
    8 × 8 image tokens, and a 4-level VQ decoder (factor 8) over the world's codes."""
    patch = 16
    return JanusConfig(
        tie_word_embeddings=False,  # as Janus-Pro: lm_head is its own matrix (JanusConfig ties by default)
        text_config={
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": hidden,
            "intermediate_size": 8 * hidden // 3 // 32 * 32,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "num_key_value_heads": heads // 2,
            "max_position_embeddings": 512,
            "rope_theta": 10000.0,
            "tie_word_embeddings": False,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": world.TOKENS * patch,
            "patch_size": patch,
            "projection_dim": hidden,
            "num_image_tokens": world.TOKENS**2,
        },
        vq_config={
            "embed_dim": code_dim,
            "num_embeddings": world.CODES,
            "latent_channels": 32,
            "base_channels": 32,
            "channel_multiplier": [1, 1, 1, 1],
            "num_res_blocks": 1,
            "projection_dim": hidden,
            "image_token_embed_dim": hidden,
        },
    )
