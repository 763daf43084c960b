"""Relative depth maps for T2I-CompBench's 3D-spatial rule (DPT-Hybrid MiDaS).

``Intel/dpt-hybrid-midas`` (``DPTForDepthEstimation``) holds the same MiDaS v3 hybrid weights
as the official ``dpt_hybrid-midas-501f0c75.pt``. As the official pipeline: input resized to
480x480 with mean = std = 0.5, output relative *inverse* depth (bigger = nearer), min-max
normalised per image, bilinearly resized (align_corners) and quantised to 8 bits by
truncation (its PNG round trip). Difference: the official resizes to the image size, saves,
then resizes again into the detector's 479-px frame; here the map is resized once, straight
to the requested size.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from transformers import DPTForDepthEstimation
from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

from rewards.hub import LazyModel, load_pretrained


class DepthEstimator(LazyModel):
    """Lazily loaded DPT returning one ``uint8`` inverse-depth map per image."""

    def __init__(self, checkpoint: str = "Intel/dpt-hybrid-midas", image_size: int = 480, batch_size: int = 8) -> None:
        super().__init__(checkpoint, batch_size)
        self.image_size = image_size

    def _load(self) -> None:
        what = "T2I-CompBench 3D-spatial depth model"
        self.model = load_pretrained(DPTForDepthEstimation.from_pretrained, self.checkpoint, what=what)
        self.processor = load_pretrained(
            DPTImageProcessorPil.from_pretrained,
            self.checkpoint,
            what=what,
            size={"height": self.image_size, "width": self.image_size},
            keep_aspect_ratio=False,
            ensure_multiple_of=1,
            do_pad=False,
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
        )

    def depth_maps(self, images: list[Image.Image], sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """``uint8`` maps, ``sizes[i] = (width, height)`` of map ``i``; ``batch_size`` images per forward."""
        self.load()
        step = self.batch_size
        return [m for i in range(0, len(images), step) for m in self._depth_maps(images[i : i + step], sizes[i : i + step])]

    @torch.no_grad()
    def _depth_maps(self, images: list[Image.Image], sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        pixels = self.processor([im.convert("RGB") for im in images], return_tensors="pt").pixel_values
        predicted = self.model(pixel_values=pixels.to(device=self.device, dtype=self.dtype)).predicted_depth.float()
        maps = []
        for depth, (width, height) in zip(predicted, sizes):
            low, high = depth.min(), depth.max()
            depth = (depth - low) / (high - low) if high > low else torch.zeros_like(depth)
            depth = torch.nn.functional.interpolate(depth[None, None], size=(height, width), mode="bilinear", align_corners=True)[0, 0]
            maps.append((255 * depth).clamp(0, 255).to(torch.uint8).cpu().numpy())
        return maps
