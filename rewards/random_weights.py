"""Reward checkpoints with random weights, at the real models' shapes or tiny, written offline.

Why: a reward's GPU memory and speed depend on its shapes, not on its weight values. So
``python -m rewards.random_weights geneval --out DIR`` lets ``milr.bench`` measure MILR with the
GenEval reward at full size (``--reward-config DIR/geneval.yaml``) on a machine without the
weights, and the tests build the same classes at tiny sizes. Each checkpoint is written in its
Hub layout (config, safetensors, tokenizer / image processor), so a reward loads it through its
usual checkpoint option. The CLIP tokenizer is an offline stand-in with one token per byte: text
lengths, and so the text-encoder timings, differ a little from the real BPE. A random model's
scores mean nothing.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from tokenizers import pre_tokenizers
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTokenizer,
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    Mask2FormerImageProcessorPil,
    SwinConfig,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

Size = Literal["real", "tiny"]

#: CLIP ViT-L/14 (``openai/clip-vit-large-patch14``): text / vision towers and projection
CLIP_L14: dict[str, Any] = {
    "text": dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
    "vision": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, image_size=224, patch_size=14),
    "projection_dim": 768,
}
#: Mask2Former Swin-S, COCO instance (``facebook/mask2former-swin-small-coco-instance``): the
#: Swin backbone; the pixel decoder and transformer head are ``Mask2FormerConfig``'s defaults
SWIN_S: dict[str, Any] = dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], window_size=7)
#: one tiny transformer layer, for test-sized models
TINY_LAYER: dict[str, Any] = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2)
TINY_SWIN: dict[str, Any] = dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4)
TINY_MASK2FORMER_HEAD: dict[str, Any] = dict(
    num_queries=8, hidden_dim=32, mask_feature_size=32, feature_size=32, encoder_layers=1, decoder_layers=2,
    encoder_feedforward_dim=32, dim_feedforward=32, num_attention_heads=2,
)  # fmt: skip


def random_model(model_class: type, config: Any, seed: int) -> Any:
    """``model_class(config)`` with weights drawn from ``seed``; the global RNG is left alone."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return model_class(config).eval()


def byte_clip_tokenizer() -> CLIPTokenizer:
    """Byte-level CLIP BPE without merges: one token per character, CLIP's special tokens."""
    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + len(chars) for i, c in enumerate(chars)})
    vocab.update({"<|startoftext|>": 2 * len(chars), "<|endoftext|>": 2 * len(chars) + 1})
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def clip_config(text: dict[str, Any], vision: dict[str, Any], projection_dim: int, tokenizer: CLIPTokenizer) -> CLIPConfig:
    """CLIP with 77 text positions and ``tokenizer``'s special ids; ``text`` may omit ``vocab_size``
    (the tokenizer's size is used)."""
    specials = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return CLIPConfig(
        text_config={"vocab_size": len(tokenizer), **text, "max_position_embeddings": 77, **specials},
        vision_config=vision,
        projection_dim=projection_dim,
    )


def write_clip(path: Path, text: dict[str, Any], vision: dict[str, Any], projection_dim: int, seed: int = 0) -> Path:
    """A ``CLIPModel`` checkpoint (``clip_config``) with the offline tokenizer and its image processor."""
    tokenizer = byte_clip_tokenizer()
    random_model(CLIPModel, clip_config(text, vision, projection_dim, tokenizer), seed).save_pretrained(path)
    tokenizer.save_pretrained(path)
    side = vision["image_size"]
    CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(path)
    return path


def mask2former_config(swin: dict[str, Any], head: dict[str, Any]) -> Mask2FormerConfig:
    """Mask2Former for the 80 COCO classes on a four-stage Swin backbone."""
    stages = ["stage1", "stage2", "stage3", "stage4"]
    return Mask2FormerConfig(backbone_config=SwinConfig(**swin, out_features=stages), num_labels=80, **head)


def mask2former_model(swin: dict[str, Any], head: dict[str, Any], seed: int = 0) -> Mask2FormerForUniversalSegmentation:
    """``mask2former_config`` with random weights."""
    return random_model(Mask2FormerForUniversalSegmentation, mask2former_config(swin, head), seed)


def write_mask2former(path: Path, model: Mask2FormerForUniversalSegmentation, processor_size: dict[str, int]) -> Path:
    """``model`` plus its image processor (``processor_size``: shortest / longest edge)."""
    model.save_pretrained(path)
    Mask2FormerImageProcessorPil(size=processor_size).save_pretrained(path)
    return path


@dataclass(frozen=True)
class GenEvalShapes:
    """One size of GenEval's two models, and the detector input the reward config asks for."""

    swin: dict[str, Any]
    head: dict[str, Any]  # Mask2Former head options beyond ``Mask2FormerConfig``'s defaults
    processor_size: dict[str, int]  # the detector checkpoint's image processor: shortest / longest edge
    clip_text: dict[str, Any]
    clip_vision: dict[str, Any]
    projection_dim: int
    detector_size: list[int] | None = None  # None: the reward's default (mmdet's 800 / 1333)


GENEVAL_SHAPES: dict[str, GenEvalShapes] = {
    "real": GenEvalShapes(
        SWIN_S, {}, {"shortest_edge": 800, "longest_edge": 1333}, CLIP_L14["text"], CLIP_L14["vision"], CLIP_L14["projection_dim"]
    ),
    # stage-4 features of at least 2×2 at a 64 px detector input: GroupNorm needs more than one value
    "tiny": GenEvalShapes(
        TINY_SWIN, TINY_MASK2FORMER_HEAD, {"shortest_edge": 32, "longest_edge": 48},
        TINY_LAYER, dict(TINY_LAYER, image_size=32, patch_size=16), 16, detector_size=[64, 96],
    ),  # fmt: skip
}


def write_geneval(out: Path, size: Size = "real", seed: int = 0) -> Path:
    """GenEval's detector and colour classifier under ``out``, plus ``out/geneval.yaml``, the
    reward config that points ``rewards.geneval.GenEvalReward`` at them. Returns the YAML path."""
    shapes = GENEVAL_SHAPES[size]
    detector, clip = out / "mask2former", out / "clip"
    write_mask2former(detector, mask2former_model(shapes.swin, shapes.head, seed), shapes.processor_size)
    write_clip(clip, shapes.clip_text, shapes.clip_vision, shapes.projection_dim, seed)
    config = out / "geneval.yaml"
    config.write_text(
        f"# GenEval reward with RANDOM weights at {size} shapes (python -m rewards.random_weights): for timing\n"
        "# and memory only, its scores mean nothing. Use: python -m milr.bench --reward-config <this file>\n"
        "model:\n  reward:\n    class_path: rewards.geneval.GenEvalReward\n    init_args:\n"
        f"      detector: {detector.resolve()}\n      clip_model: {clip.resolve()}\n"
        + (f"      detector_size: {shapes.detector_size}\n" if shapes.detector_size else "")
    )
    return config


WRITERS: dict[str, Callable[[Path, Size, int], Path]] = {"geneval": write_geneval}


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m rewards.random_weights",
        description="Write reward checkpoints with random weights (for benchmarks without the real weights).",
    )
    parser.add_argument("reward", choices=sorted(WRITERS))
    parser.add_argument("--out", required=True, type=Path, help="folder for the checkpoints and the reward YAML")
    parser.add_argument("--size", choices=["real", "tiny"], default="real", help="real: the published shapes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    config = WRITERS[args.reward](args.out, args.size, args.seed)
    print(config)
    return config


if __name__ == "__main__":
    main()
