"""A checkpoint folder with Janus-Pro-1B's geometry but one narrow layer, built offline from the
facts in ``tests/fixtures/janus_pro_geometry/`` (never from ``../shared``: CI has a clean checkout).

Kept from Janus-Pro-1B: the 102400-token vocabulary, the special tokens at their real ids and with
their real strings, the chat template, the generation config (pad id, ``boi_token_id``, guidance),
24 × 24 image tokens, the 16384-code VQ and its five-level decoder (384 px). Narrowed (``NARROW``):
widths, depths and heads, so a MILR step runs on CPU in seconds. The folder is written by
``save_pretrained`` as the converted checkpoints are (model, generation config, processor with
tokenizer and chat template), with its own ``lm_head`` (no tied embeddings).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    GenerationConfig,
    JanusConfig,
    JanusForConditionalGeneration,
    JanusImageProcessorPil,
    JanusProcessor,
    PreTrainedTokenizerFast,
)

from milr.tiny import tiny_tokenizer

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "janus_pro_geometry"

#: the only values that differ from Janus-Pro-1B's config.json: widths, depths, heads
NARROW: dict[str, dict[str, Any]] = {
    "text_config": {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
        "num_attention_heads": 4, "num_key_value_heads": 4, "head_dim": 16,
    },
    "vision_config": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "projection_dim": 64},
    # GroupNorm(32 groups) needs channel counts that are multiples of 32
    "vq_config": {"base_channels": 32, "latent_channels": 32, "num_res_blocks": 1, "projection_dim": 64, "image_token_embed_dim": 64},
}  # fmt: skip


def fact(name: str) -> dict[str, Any]:
    """A fixture JSON file without its provenance keys (``_source``, ``_note``)."""
    return {k: v for k, v in json.loads((FIXTURE / name).read_text()).items() if not k.startswith("_")}


def chat_template() -> str:
    return (FIXTURE / "chat_template.jinja").read_text()


def real_ids_tokenizer() -> PreTrainedTokenizerFast:
    """``milr.tiny``'s byte-level BPE re-laid to the real vocabulary: its learnt tokens first, the
    special tokens at their real ids, filler tokens ``<tN>`` in every other slot up to the model's
    vocabulary size, BOS prepended, left padding, the real chat template."""
    tokens = fact("special_tokens.json")
    specials, roles = tokens["ids"], tokens["roles"]
    learnt = tiny_tokenizer().backend_tokenizer
    trained = json.loads(learnt.to_str())["model"]
    added = {t.content for t in learnt.get_added_tokens_decoder().values()}
    regular = iter(sorted((t for t in trained["vocab"] if t not in added), key=trained["vocab"].get))
    at_id = {i: t for t, i in specials.items()}
    vocab = {at_id.get(i) or next(regular, f"<t{i}>"): i for i in range(fact("config.json")["text_config"]["vocab_size"])}
    tok = Tokenizer(models.BPE(vocab, [tuple(m) for m in trained["merges"]]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])  # keep their ids
    bos = roles["bos_token"]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, specials[bos])])
    image = {k: roles[k] for k in ("image_token", "boi_token", "eoi_token")}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, padding_side="left", extra_special_tokens=image, chat_template=chat_template(),
        bos_token=roles["bos_token"], eos_token=roles["eos_token"], pad_token=roles["pad_token"],
    )  # fmt: skip


def narrow_config() -> JanusConfig:
    """Janus-Pro-1B's config.json with ``NARROW`` applied, and an untied ``lm_head`` as in the checkpoint."""
    raw = fact("config.json")
    for part, values in NARROW.items():
        raw[part] = {**raw[part], **values}
    for key in ("architectures", "torch_dtype", "transformers_version"):
        raw.pop(key, None)
    return JanusConfig(**raw, tie_word_embeddings=False)


def save_checkpoint(folder: Path, seed: int = 0) -> Path:
    """Write the narrow real-geometry checkpoint to ``folder`` with ``save_pretrained``."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = JanusForConditionalGeneration(narrow_config()).eval()
    model.generation_config = GenerationConfig(**fact("generation_config.json"))
    model.save_pretrained(folder)
    JanusProcessor(JanusImageProcessorPil(), real_ids_tokenizer(), chat_template=chat_template()).save_pretrained(folder)
    return folder
