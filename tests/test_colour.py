"""The flat-region colour error: what it counts and what it leaves out."""

import pytest
import torch

from pipelines.colour import FlatColourError, flat_colour_mask


def two_colour_image() -> torch.Tensor:
    """(1, 3, 16, 16): a purple left half and a white right half, a sharp edge between."""
    image = torch.ones(1, 3, 16, 16)
    image[:, :, :, :8] = torch.tensor([0.5, 0.2, 0.7]).view(1, 3, 1, 1)
    return image


def test_mask_takes_flat_coloured_pixels_and_leaves_out_edges_white_and_texture():
    image = two_colour_image()
    mask = flat_colour_mask(image)[0]
    assert mask[:, :6].all()  # purple, two pixels or more from the edge
    assert not mask[:, 6:].any()  # the edge's neighbourhood and the white half
    noisy = image + 0.1 * torch.randn_like(image)
    assert not flat_colour_mask(noisy).any()


def test_error_is_the_rgb_distance_in_8_bit_levels_on_the_flat_pixels_only():
    real = two_colour_image()
    shifted = real.clone()
    shifted[:, 2, :, :8] -= 30 / 255  # purple → less blue, by 30 levels
    shifted[:, :, :, 8:] = 0.0  # the white half turned black: not a flat coloured region, not counted
    error = FlatColourError()
    error.update(real, shifted)
    assert error.compute() == pytest.approx(30.0, abs=1e-3)
    same = FlatColourError()
    same.update(real, real)
    assert same.compute() == 0.0


def test_grey_images_have_no_flat_colour_error():
    error = FlatColourError()
    grey = torch.full((2, 3, 16, 16), 0.4)
    error.update(grey, grey * 0.5)
    assert error.compute() is None
