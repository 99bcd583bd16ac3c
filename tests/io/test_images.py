"""The one image reader that `vidsr eval` and training share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidsr.errors import InputError
from vidsr.io.images import list_images, read_image, read_rgb


def test_images_are_listed_by_name_and_read_as_uint8_chw(tmp_path: Path):
    pixels = np.arange(40 * 48 * 3, dtype=np.uint8).reshape(40, 48, 3)
    Image.fromarray(pixels).save(tmp_path / "b.png")
    Image.fromarray(pixels[..., 0]).save(tmp_path / "a.bmp")  # grayscale
    (tmp_path / "notes.txt").write_text("not an image")
    assert [p.name for p in list_images(tmp_path)] == ["a.bmp", "b.png"]
    rgb = read_rgb(tmp_path / "b.png")
    assert rgb.shape == (3, 40, 48) and rgb.dtype == torch.uint8
    assert torch.equal(rgb.permute(1, 2, 0), torch.from_numpy(pixels))


def test_folder_without_images_is_an_input_error(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("no pictures here")
    with pytest.raises(InputError, match="no images found"):
        list_images(tmp_path)


def test_unreadable_image_names_the_file(tmp_path: Path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    with pytest.raises(InputError, match="broken.png"):
        read_rgb(broken)


def test_grayscale_images_keep_one_channel_and_sixteen_bits_are_scaled(tmp_path: Path):
    values = np.array([[0, 100, 255]], dtype=np.uint8)
    Image.fromarray(values, mode="L").save(tmp_path / "gray.png")
    Image.fromarray(values.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    Image.fromarray(np.repeat(values[..., None], 3, axis=2)).save(tmp_path / "rgb.png")
    with Image.open(tmp_path / "gray16.png") as sixteen:
        assert sixteen.mode in ("I;16", "I")
    for name in ("gray.png", "gray16.png"):
        image = read_image(tmp_path / name)
        assert image.shape == (1, 1, 3)
        assert image[0].tolist() == [[0, 100, 255]]
        assert read_rgb(tmp_path / name).tolist() == [[[0, 100, 255]]] * 3
    assert read_image(tmp_path / "rgb.png").shape == (3, 1, 3)
