"""Still images: the folders ``vidsr eval`` scores and training reads, one reader for both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vidsr.errors import InputError

IMAGE_SUFFIXES = frozenset({".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm"})


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; give a folder of HR images")
    images = sorted(
        path for path in folder.iterdir()
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise InputError(f"{folder}: no images found (looked for {suffixes})")
    return images


# Pillow modes of one-channel images. Pillow opens a 16-bit grayscale PNG or TIFF as "I;16"
# or "I"; those are scaled to 8 bits (Pillow's own conversion would clip them).
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L"})
SIXTEEN_BIT_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L"})


def read_rgb(path: Path) -> torch.Tensor:
    """An image file as a (3, H, W) uint8 RGB tensor (a grayscale image's value in each)."""
    image = read_image(path)
    return image.expand(3, -1, -1).contiguous() if image.shape[0] == 1 else image


def read_image(path: Path) -> torch.Tensor:
    """An image file as uint8: (1, H, W) for a one-channel image, else (3, H, W) RGB.

    Evaluation needs to know: a grayscale image is scored on its own values, as
    MATLAB's protocol (which only calls ``rgb2ycbcr`` on three-channel images) does.
    """
    try:
        with Image.open(path) as image:
            one_channel = image.mode in GRAY_MODES
            if not one_channel:
                array = np.array(image.convert("RGB"))
            elif image.mode in SIXTEEN_BIT_GRAY_MODES:
                array = _sixteen_to_8bit(np.array(image))
            else:
                array = np.array(image.convert("L"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read this image ({exc})") from exc
    if one_channel:
        return torch.from_numpy(array)[None].contiguous()
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _sixteen_to_8bit(array: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(array.astype(np.float64) / 257.0 + 0.5), 0, 255).astype(np.uint8)
