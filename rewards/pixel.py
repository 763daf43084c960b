"""A weight-free colour reward for the offline demo and tests.

Score = how close the image's mean colour is to the colour words of the prompt. A random
Janus decodes near-constant colours (docs/method.md), so the raw distance hardly varies between
samples and would carry no signal; the reward is therefore calibrated against images of the
same decoder: ``R = Φ((raw − μ_c) / σ_c)`` with ``μ_c, σ_c`` of the raw score for colour ``c``
over decodes of random token grids. On a real model calibration is unnecessary (``calibrate: false``).
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
from PIL import Image

from data.prompt import Prompt
from rewards.base import Reward, RewardOutput, register

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "purple": (130, 50, 170),
    "pink": (245, 150, 190),
    "brown": (130, 80, 40),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
}
_WORDS = re.compile(r"\b(" + "|".join(COLOURS) + r"|grey)\b", re.IGNORECASE)


def colour_words(text: str) -> list[str]:
    """Colour names in ``text`` in order of appearance ('grey' → 'gray')."""
    return [w.lower().replace("grey", "gray") for w in _WORDS.findall(text)]


def raw_colour_score(image: Image.Image, colours: list[str]) -> float:
    """Negative mean distance of the image's mean RGB to each target colour, in [-1, 0]."""
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3))
    mean = pixels.mean(0)
    dists = [torch.linalg.vector_norm(mean - torch.tensor(COLOURS[c], dtype=torch.float32)) for c in colours]
    return -float(torch.stack(dists).mean()) / (255.0 * math.sqrt(3))


@register("pixel_color")
class ColorReward(Reward):
    """Closeness of the image's mean colour to the prompt's colour words (default: ``white``)."""

    def __init__(self, calibrate: bool = True, calibration_samples: int = 64, default_colour: str = "white", seed: int = 0) -> None:
        if default_colour not in COLOURS:
            raise ValueError(f"default_colour must be one of {sorted(COLOURS)}")
        self.calibrate = calibrate
        self.calibration_samples = calibration_samples
        self.default_colour = default_colour
        self.seed = seed
        self.stats: dict[str, tuple[float, float]] = {}

    def setup(self, *, device="cpu", dtype=torch.float32, backbone=None) -> None:
        super().setup(device=device, dtype=dtype, backbone=backbone)
        if self.calibrate:
            if backbone is None:
                raise ValueError("ColorReward(calibrate=True) needs the backbone to calibrate against")
            self.stats = self._calibration(backbone)

    def _calibration(self, backbone) -> dict[str, tuple[float, float]]:
        """Per-colour mean/std of the raw score over decodes of random token grids."""
        gen = torch.Generator().manual_seed(self.seed)
        vocab = backbone.model.config.vq_config.num_embeddings
        tokens = torch.randint(0, vocab, (self.calibration_samples, backbone.num_image_tokens), generator=gen)
        images = backbone.decode_images(tokens)
        stats = {}
        for colour in COLOURS:
            raw = torch.tensor([raw_colour_score(im, [colour]) for im in images])
            stats[colour] = (float(raw.mean()), float(raw.std().clamp_min(1e-6)))
        return stats

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        scores, details = [], []
        for image, prompt in zip(images, prompts):
            colours = colour_words(prompt.text) or [self.default_colour]
            raw = raw_colour_score(image, colours)
            if self.calibrate:
                if not self.stats:
                    raise RuntimeError("ColorReward: call setup(backbone=...) before scoring (calibration)")
                z = sum((raw_colour_score(image, [c]) - self.stats[c][0]) / self.stats[c][1] for c in colours) / len(colours)
                value = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
            else:
                value = 1.0 + raw
            scores.append(value)
            details.append({"colours": colours, "raw": round(raw, 6)})
        return RewardOutput(torch.tensor(scores, dtype=torch.float32), details)
