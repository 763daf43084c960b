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
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPTokenizer,
    Mask2FormerConfig,
    Mask2FormerForUniversalSegmentation,
    Mask2FormerImageProcessorPil,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
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
#: OpenCLIP ViT-H/14 (``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``), the shapes of PickScore and HPSv2
CLIP_H14: dict[str, Any] = {
    "text": dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, hidden_act="gelu"),
    "vision": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16, image_size=224, patch_size=14,
                   hidden_act="gelu"),
    "projection_dim": 1024,
}  # fmt: skip
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
    extra = {"detector_size": shapes.detector_size} if shapes.detector_size else {}
    return write_reward_yaml(out, "geneval", size, "rewards.geneval.GenEvalReward", {"detector": detector, "clip_model": clip, **extra})


def write_reward_yaml(out: Path, name: str, size: Size, class_path: str, init_args: dict[str, Any]) -> Path:
    """``out/<name>.yaml``: the reward config that points ``class_path`` at the checkpoints just
    written (paths made absolute). Returns its path."""
    args = "".join(f"      {key}: {json.dumps(str(v.resolve()) if isinstance(v, Path) else v)}\n" for key, v in init_args.items())
    config = out / f"{name}.yaml"
    config.write_text(
        f"# {name} reward with RANDOM weights at {size} shapes (python -m rewards.random_weights): for timing\n"
        "# and memory only, its scores mean nothing. Use: python -m milr.bench --reward-config <this file>\n"
        f"model:\n  reward:\n    class_path: {class_path}\n    init_args:\n{args}"
    )
    return config


CLIP_SHAPES: dict[str, tuple[dict[str, Any], dict[str, Any], int]] = {
    "real": (CLIP_H14["text"], CLIP_H14["vision"], CLIP_H14["projection_dim"]),
    "tiny": (TINY_LAYER, dict(TINY_LAYER, image_size=32, patch_size=16), 16),
}


def clip_preference_writer(name: str, class_path: str) -> Callable[[Path, Size, int], Path]:
    """Writer of a ViT-H/14 ``CLIPModel`` preference judge (PickScore, HPSv2): checkpoint, tokenizer
    and image processor in one folder, which is both the ``checkpoint`` and the ``processor``."""

    def write(out: Path, size: Size = "real", seed: int = 0) -> Path:
        folder = write_clip(out / name, *CLIP_SHAPES[size], seed)
        return write_reward_yaml(out, name, size, class_path, {"checkpoint": folder, "processor": folder})

    return write


# the Qwen2-VL chat template (default system turn, image placeholders), as shipped with Qwen2.5-VL
QWEN_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def byte_qwen_tokenizer() -> PreTrainedTokenizerFast:
    """An offline stand-in for Qwen's tokenizer: byte-level BPE with 320 tokens learnt from a few
    judge phrases, Qwen's special tokens, ``<|im_end|>`` as end and ``<|endoftext|>`` as padding."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=QWEN_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["You are a helpful assistant. Rate the image. Final Score: 3 Consistency: 2"] * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")


@dataclass(frozen=True)
class QwenVLShapes:
    """One size of a Qwen VL judge: model class, text / vision towers, image processor options."""

    model_class: type
    text: dict[str, Any]
    vision: dict[str, Any]
    image_processor: dict[str, Any]


def qwen_vl_config(shapes: QwenVLShapes, tokenizer: PreTrainedTokenizerFast) -> Any:
    """The model config of ``shapes`` with ``tokenizer``'s special ids (``text`` may omit ``vocab_size``)."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    config_class = Qwen3VLConfig if shapes.model_class is Qwen3VLForConditionalGeneration else Qwen2_5_VLConfig
    specials = dict(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    return config_class(
        text_config={"vocab_size": len(tokenizer), **shapes.text, **specials},
        vision_config=shapes.vision,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip


def write_qwen_vl(path: Path, shapes: QwenVLShapes, seed: int = 0) -> Path:
    """A Qwen VL checkpoint of ``shapes`` with the offline tokenizer, image processor and chat template."""
    tokenizer = byte_qwen_tokenizer()
    tokenizer.save_pretrained(path)
    Qwen2VLImageProcessorPil(**shapes.image_processor).save_pretrained(path)
    (path / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_CHAT_TEMPLATE}))
    random_model(shapes.model_class, qwen_vl_config(shapes, tokenizer), seed).save_pretrained(path)
    return path


TINY_QWEN_TEXT: dict[str, Any] = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                      num_key_value_heads=1, max_position_embeddings=2048)  # fmt: skip
#: the yes/no judges' shapes, from the checkpoints' config.json (the vocabulary of the real ones
#: keeps the embedding size; the stand-in tokenizer only uses its first ids)
QWEN_VL_SHAPES: dict[str, dict[str, QwenVLShapes]] = {
    "qwen2_5_vl": {  # Qwen/Qwen2.5-VL-7B-Instruct
        "real": QwenVLShapes(
            Qwen2_5_VLForConditionalGeneration,
            dict(vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, max_position_embeddings=128000,
                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]}),
            dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                 fullatt_block_indexes=[7, 15, 23, 31], window_size=112),
            dict(min_pixels=3136, max_pixels=12845056),
        ),
        "tiny": QwenVLShapes(
            Qwen2_5_VLForConditionalGeneration,
            dict(TINY_QWEN_TEXT, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}),
            dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, fullatt_block_indexes=[0], window_size=56),
            dict(min_pixels=28 * 28, max_pixels=56 * 56),
        ),
    },
    "qwen3_vl": {  # Qwen/Qwen3-VL-8B-Instruct
        "real": QwenVLShapes(
            Qwen3VLForConditionalGeneration,
            dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                 num_key_value_heads=8, head_dim=128, max_position_embeddings=262144,
                 rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True}),
            dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=4096, deepstack_visual_indexes=[8, 16, 24],
                 patch_size=16, num_position_embeddings=2304),
            dict(patch_size=16, min_pixels=65536, max_pixels=16777216),
        ),
        "tiny": QwenVLShapes(
            Qwen3VLForConditionalGeneration,
            dict(TINY_QWEN_TEXT, head_dim=16,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True}),
            dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, deepstack_visual_indexes=[0],
                 patch_size=16, num_position_embeddings=16),
            dict(patch_size=16, min_pixels=32 * 32, max_pixels=64 * 64),
        ),
    },
}  # fmt: skip


def vlm_yes_no_writer(model_type: str) -> Callable[[Path, Size, int], Path]:
    """Writer of the yes/no VLM judge on a random Qwen VL of ``model_type``."""

    def write(out: Path, size: Size = "real", seed: int = 0) -> Path:
        folder = write_qwen_vl(out / model_type, QWEN_VL_SHAPES[model_type][size], seed)
        return write_reward_yaml(out, "vlm_yes_no", size, "rewards.vlm_yes_no.VLMYesNoReward", {"model_name_or_path": folder})

    return write


WRITERS: dict[str, Callable[[Path, Size, int], Path]] = {
    "geneval": write_geneval,
    "pickscore": clip_preference_writer("pickscore", "rewards.preference.PickScoreReward"),
    "hpsv2": clip_preference_writer("hpsv2", "rewards.preference.HPSv2Reward"),
    "vlm_yes_no": vlm_yes_no_writer("qwen2_5_vl"),  # Qwen2.5-VL-7B, the reward's default
    "vlm_yes_no_qwen3": vlm_yes_no_writer("qwen3_vl"),  # Qwen3-VL-8B
}


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
