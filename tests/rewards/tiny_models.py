"""Tiny randomly initialised checkpoints of the reward models' transformers classes, for tests.

Each builder writes config, weights and the tokenizer/processor files into ``path`` in the
layout of the Hub checkpoint (so the rewards load it through their checkpoint options exactly
as a downloaded one) and returns ``path``. Everything is built offline; weights are drawn from
``seed`` without touching the global RNG, so a checkpoint does not depend on what ran before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from transformers import (
    BertConfig,
    BertTokenizerFast,
    BlipConfig,
    BlipForQuestionAnswering,
    DPTConfig,
    DPTForDepthEstimation,
    GitConfig,
    GitForCausalLM,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    SwinConfig,
)
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil
from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

from rewards.geneval import OBJECT_NAMES
from rewards.random_weights import (
    TINY_LAYER as LAYER,
    GENEVAL_SHAPES,
    QWEN_VL_SHAPES,
    mask2former_model,
    random_model,
    write_clip,
    write_mask2former,
    write_qwen_vl,
)

TINY = GENEVAL_SHAPES["tiny"]

#: vocabulary size of the tiny BERT-style tokenizer; Grounding DINO hard-codes BERT's ids of
#: [CLS] 101, [SEP] 102, "." 1012 and "?" 1029, so the tiny vocabulary keeps those slots
VOCAB_SIZE = 1030
WORDS = "yes no is this a an the are there red green blue bench bowl dog dogs cat cats next to on top of left right near bear teddy".split()

# --------------------------------------------------------------------------- tokenizers
def tiny_bert_tokenizer(path: Path) -> BertTokenizerFast:
    """Uncased WordPiece over ``WORDS`` with BERT's special-token ids, saved to ``path``."""
    vocab = [f"[unused{i}]" for i in range(VOCAB_SIZE)]
    for index, token in {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]", 1012: ".", 1029: "?"}.items():
        vocab[index] = token
    for i, word in enumerate(WORDS):
        vocab[200 + i] = word
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)})
    tokenizer.save_pretrained(path)
    return tokenizer


# --------------------------------------------------------------------------- checkpoints
def tiny_clip(path: Path, image_size: int = 32, patch_size: int = 16, seed: int = 0) -> Path:
    """CLIPModel (77 text positions, ``image_size`` px square images, 16-d projection)."""
    return write_clip(path, TINY.clip_text, dict(TINY.clip_vision, image_size=image_size, patch_size=patch_size), TINY.projection_dim, seed)


def tiny_mask2former(path: Path, always: Optional[str] = None, seed: int = 0) -> Path:
    """Mask2Former (Swin, 80 COCO classes, 8 queries, 32-48 px inputs).

    ``always``: every query detects this GenEval class with probability ~1 and a mask covering
    the whole image, so the GenEval rules have a known outcome.
    """
    model = mask2former_model(TINY.swin, TINY.head, seed)
    if always is not None:
        with torch.no_grad():
            model.class_predictor.weight.zero_()
            model.class_predictor.bias.fill_(-10.0)
            model.class_predictor.bias[OBJECT_NAMES.index(always)] = 20.0
            for layer in (
                model.model.pixel_level_module.decoder.mask_projection,  # pixel embeddings: all 1
                model.model.transformer_module.decoder.mask_predictor.mask_embedder.get_submodule("2.0"),  # mask embeddings: all 1
            ):
                layer.weight.zero_()
                layer.bias.fill_(1.0)
    return write_mask2former(path, model, TINY.processor_size)


def tiny_blip(path: Path, seed: int = 0) -> Path:
    """BLIP VQA (BERT vocabulary + [DEC] and [ENC] at the end, 32 px images)."""
    tiny_bert_tokenizer(path)
    config = BlipConfig(
        text_config=dict(LAYER, vocab_size=VOCAB_SIZE + 2, max_position_embeddings=64, bos_token_id=VOCAB_SIZE, sep_token_id=102, pad_token_id=0),
        vision_config=dict(LAYER, image_size=32, patch_size=16),
    )
    random_model(BlipForQuestionAnswering, config, seed).save_pretrained(path)
    BlipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def tiny_grounding_dino(path: Path, seed: int = 0) -> Path:
    """Grounding DINO with a 2-stage Swin backbone (no timm), 10 queries, 64-px inputs."""
    tiny_bert_tokenizer(path)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 1], window_size=4, out_features=["stage1", "stage2"]),
        text_config=BertConfig(vocab_size=VOCAB_SIZE, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=64),
        use_timm_backbone=False, use_pretrained_backbone=False, d_model=32, encoder_layers=1, decoder_layers=2,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10,
        num_feature_levels=2, encoder_n_points=2, decoder_n_points=2, max_text_len=32,
    )
    random_model(GroundingDinoForObjectDetection, config, seed).save_pretrained(path)
    GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 64}).save_pretrained(path)
    return path


def tiny_dpt(path: Path, seed: int = 0) -> Path:
    """DPT depth estimator (4 ViT layers, 32 px inputs)."""
    config = DPTConfig(**dict(LAYER, num_hidden_layers=4), image_size=32, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
                       neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=16)
    random_model(DPTForDepthEstimation, config, seed).save_pretrained(path)
    DPTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def tiny_git(path: Path, seed: int = 0) -> Path:
    """GIT causal LM (BERT vocabulary with "yes"/"no", CLIP image processor, 32 px images)."""
    tiny_bert_tokenizer(path)
    config = GitConfig(
        vision_config=dict(LAYER, image_size=32, patch_size=16), vocab_size=VOCAB_SIZE, max_position_embeddings=64,
        bos_token_id=101, eos_token_id=102, pad_token_id=0, **LAYER,
    )
    random_model(GitForCausalLM, config, seed).save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def tiny_qwen_vl(path: Path, seed: int = 0) -> Path:
    """A 1-layer Qwen2.5-VL plus byte-level tokenizer, image processor and chat template."""
    return write_qwen_vl(path, QWEN_VL_SHAPES["qwen2_5_vl"]["tiny"], seed)


def tiny_qwen3_vl(path: Path, seed: int = 0) -> Path:
    """A 1-layer Qwen3-VL (2 vision blocks, one deepstack merger), same tokenizer and template."""
    return write_qwen_vl(path, QWEN_VL_SHAPES["qwen3_vl"]["tiny"], seed)
