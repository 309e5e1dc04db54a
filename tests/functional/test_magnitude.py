"""Fourier magnitudes: the estimate against numpy, its inputs, the resize, and the shipped default re-estimated."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from inputopt.functional.color import natural_photographs
from inputopt.functional.magnitude import (
    DEFAULT_MAGNITUDE_FILE,
    default_magnitude,
    estimate_default_magnitudes,
    estimate_magnitude,
    resize_magnitude,
)


def numpy_magnitude(images: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.rfft2(images.astype(np.float64), norm="ortho")).mean(0)


def test_estimate_is_the_mean_rfft2_magnitude():
    images = torch.rand(5, 3, 6, 7, generator=torch.Generator().manual_seed(0))
    expected = torch.from_numpy(numpy_magnitude(images.numpy())).float()
    torch.testing.assert_close(estimate_magnitude(images, (6, 7), window=None), expected, rtol=1e-5, atol=1e-6)
    loader = DataLoader(TensorDataset(images, torch.zeros(5)), batch_size=2)  # (images, labels) batches
    torch.testing.assert_close(estimate_magnitude(loader, (6, 7), window=None), expected, rtol=1e-5, atol=1e-6)
    assert estimate_magnitude(images, (6, 7), channels=1).shape == (1, 6, 4)


def test_hann_window_is_numpy_hann_on_the_deviation():
    images = torch.rand(3, 2, 9, 8, generator=torch.Generator().manual_seed(4)).numpy().astype(np.float64)
    window = np.outer(np.hanning(9), np.hanning(8))
    window /= np.sqrt((window ** 2).mean())
    mean = images.mean((-2, -1), keepdims=True)
    expected = np.abs(np.fft.rfft2((images - mean) * window, norm="ortho")).mean(0)
    expected[:, 0, 0] = np.abs(mean[:, :, 0, 0]).mean(0) * np.sqrt(72)
    torch.testing.assert_close(estimate_magnitude(torch.from_numpy(images).float(), (9, 8)),
                               torch.from_numpy(expected).float(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="window must be"):
        estimate_magnitude(torch.from_numpy(images), (9, 8), window="box")


def test_window_removes_the_axis_streaks_of_non_periodic_borders():
    """Smooth random ramps (non-periodic: left border != right border) put a cross of energy on the
    frequency axes of a plain FFT; the Hann window takes it off, so the axes look like their neighbours."""
    g = torch.Generator().manual_seed(5)
    ramps = torch.linspace(0, 1, 64).view(1, 1, 1, -1) * torch.rand(16, 1, 1, 1, generator=g) \
        + torch.linspace(0, 1, 64).view(1, 1, -1, 1) * torch.rand(16, 1, 1, 1, generator=g) \
        + 0.05 * torch.rand(16, 1, 64, 64, generator=g)

    def axis_excess(m):  # energy on the axes over the next row/column off them, at mid frequencies
        return ((m[0, 4:28, 0] / m[0, 4:28, 2]).mean() + (m[0, 0, 4:28] / m[0, 2, 4:28]).mean()) / 2

    assert axis_excess(estimate_magnitude(ramps, 64, window=None)) > 3
    assert axis_excess(estimate_magnitude(ramps, 64)) < 1.5


def test_decorrelated_estimate_is_the_estimate_of_the_decorrelated_channels():
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    matrix = torch.tensor([[0.6, -0.3, 0.03], [0.56, 0.09, -0.09], [0.5, 0.28, 0.06]])
    decorrelated = torch.einsum("cd,bdhw->bchw", torch.linalg.inv(matrix), images)
    torch.testing.assert_close(estimate_magnitude(images, 8, color_matrix=matrix),
                               estimate_magnitude(decorrelated, 8), rtol=1e-4, atol=1e-5)


def test_estimate_reads_a_folder_of_images(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    for i, array in enumerate(pixels):
        Image.fromarray(array).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    expected = numpy_magnitude(pixels.transpose(0, 3, 1, 2) / 255)
    torch.testing.assert_close(estimate_magnitude(tmp_path, 8, window=None), torch.from_numpy(expected).float(), rtol=1e-5,
                               atol=1e-6)
    assert estimate_magnitude(str(tmp_path), 8, channels=1).shape == (1, 8, 5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        estimate_magnitude(tmp_path / "empty", 8)
    with pytest.raises(FileNotFoundError, match="no folder"):
        estimate_magnitude(tmp_path / "missing", 8)


def test_estimate_resizes_and_crops_other_sizes():
    images = torch.rand(2, 1, 10, 16, generator=torch.Generator().manual_seed(1))
    assert estimate_magnitude(images, 8).shape == (1, 8, 5)
    with pytest.raises(ValueError, match="at least one image"):
        estimate_magnitude([], 8)
    with pytest.raises(ValueError, match="size must be"):
        estimate_magnitude(images, (8, 0))


def test_resize_samples_the_same_frequencies():
    """A log-magnitude linear in |fy| and fx (cycles per pixel) is resized exactly; the constant term
    keeps the images' mean."""
    def spectrum(height, width):
        fy, fx = torch.fft.fftfreq(height).abs().view(-1, 1), torch.fft.rfftfreq(width).view(1, -1)
        m = torch.exp(1.0 - 3.0 * fy - 5.0 * fx).expand(2, -1, -1).clone()
        m[:, 0, 0] = 0.4 * (height * width) ** 0.5  # mean 0.4
        return m

    torch.testing.assert_close(resize_magnitude(spectrum(64, 64), (16, 24)), spectrum(16, 24), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(resize_magnitude(spectrum(64, 64), (20, 30)), spectrum(20, 30), rtol=1e-5, atol=1e-6)
    same = spectrum(16, 24)
    assert torch.equal(resize_magnitude(same, (16, 24)), same)


@pytest.fixture(scope="module")
def photographs():
    return natural_photographs()


def test_default_is_reestimated_from_the_shipped_photographs(photographs):
    shipped = torch.load(DEFAULT_MAGNITUDE_FILE, weights_only=True)
    estimated = estimate_default_magnitudes(photographs)
    assert sorted(shipped) == sorted(estimated) == ["decorrelated", "gray", "rgb"]
    for name, magnitude in estimated.items():
        torch.testing.assert_close(shipped[name].float(), magnitude, rtol=2e-3, atol=1e-4)  # stored as float16
    assert torch.equal(default_magnitude(3), shipped["rgb"].float())
    assert torch.equal(default_magnitude(3, decorrelated=True), shipped["decorrelated"].float())


def test_resized_default_is_close_to_an_estimate_at_that_size(photographs):
    """Resizing is a crop's spectrum, the estimate a downscaled photograph's: for natural (about 1/f)
    spectra they differ by a scale that the images' standardization removes, plus noise."""
    for size in (32, 64):
        resized, estimated = default_magnitude(1, size), estimate_magnitude(photographs, size, channels=1)
        ratio = (resized / estimated)[0].flatten()[1:].log()  # without the constant term
        assert ratio.std() < 0.5, (size, ratio.std())
