"""Image grids for TensorBoard and step timing."""

from __future__ import annotations

from PIL import Image

from callbacks.image_logger import image_grid


def test_image_grid_tiles_images_in_rows_of_four():
    images = [Image.new("RGB", (8, 6), (i * 40, 0, 0)) for i in range(6)]
    grid = image_grid(images)
    assert grid.shape == (12, 32, 3)
    assert tuple(grid[0, 8]) == (40, 0, 0) and tuple(grid[6, 0]) == (160, 0, 0)
