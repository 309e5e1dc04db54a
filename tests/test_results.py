"""image_grid, save_grid and save_images: PNGs that read back with the expected sizes and pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from inputopt.functional import to_display
from inputopt.results import image_grid, save_grid, save_images


def read_image(path) -> torch.Tensor:
    """A PNG as a (3, H, W) uint8 tensor, read with PIL (torchvision.io's decoders are deprecated)."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.mode == "RGB"
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


def as_png_bytes(images: torch.Tensor) -> torch.Tensor:
    """What torchvision's save_image writes for [0, 1] images: round(255·x), uint8."""
    return images.mul(255).add(0.5).clamp(0, 255).to(torch.uint8)


def _images(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


class TestImageGrid:
    @pytest.mark.parametrize("batch, channels, nrow, scale, expected", [
        (4, 1, None, 1, (3, 22, 22)),   # 2 x 2 tiles of 8 + padding 2
        (5, 3, None, 1, (3, 22, 32)),   # ceil(sqrt(5)) = 3 per row, 2 rows
        (5, 3, 5, 1, (3, 12, 52)),
        (3, 3, 1, 2, (3, 56, 20)),      # 16 x 16 tiles, one per row
        (1, 3, None, 1, (3, 8, 8)),     # a single image: no padding
    ])
    def test_shape(self, batch, channels, nrow, scale, expected):
        grid = image_grid(_images((batch, channels, 8, 8)), nrow=nrow, scale=scale)
        assert grid.shape == expected

    def test_tiles_and_white_padding(self):
        x = _images((4, 3, 8, 8))
        grid = image_grid(x)
        shown = to_display(x)
        for i in range(4):
            row, col = divmod(i, 2)
            top, left = 2 + row * 10, 2 + col * 10
            torch.testing.assert_close(grid[:, top:top + 8, left:left + 8], shown[i], rtol=0, atol=0)
        assert torch.equal(grid[:, :2], torch.ones(3, 2, 22))
        assert torch.equal(grid[:, :, 10:12], torch.ones(3, 22, 2))

    def test_grey_images_become_rgb(self):
        x = _images((2, 1, 8, 8))
        grid = image_grid(x, nrow=2)
        assert torch.equal(grid[0], grid[1]) and torch.equal(grid[1], grid[2])
        torch.testing.assert_close(grid[0, 2:10, 2:10], to_display(x)[0, 0], rtol=0, atol=0)

    def test_scale_is_nearest(self):
        x = _images((1, 3, 4, 4))
        grid = image_grid(x, scale=3)
        assert grid.shape == (3, 12, 12)
        torch.testing.assert_close(grid[:, ::3, ::3], to_display(x)[0], rtol=0, atol=0)
        torch.testing.assert_close(grid[:, 2::3, 1::3], to_display(x)[0], rtol=0, atol=0)

    def test_display_modes(self):
        x = torch.tensor([-1.0, 0.5, 2.0, 0.25]).view(1, 1, 2, 2)
        assert torch.equal(image_grid(x, display="clamp")[0], torch.tensor([[0.0, 0.5], [1.0, 0.25]]))
        with pytest.raises(ValueError, match="display mode"):
            image_grid(x, display="bad")


class TestSaveGrid:
    def test_reads_back(self, tmp_path):
        x = _images((5, 3, 8, 8))
        path = save_grid(x, tmp_path / "sub" / "grid.png")
        assert path == tmp_path / "sub" / "grid.png"
        image = read_image(str(path))
        assert image.shape == (3, 22, 32)
        assert image.dtype == torch.uint8
        assert torch.equal(image, as_png_bytes(image_grid(x)))

    def test_scale_and_nrow(self, tmp_path):
        path = save_grid(_images((3, 1, 6, 6)), tmp_path / "g.png", nrow=3, scale=2)
        assert read_image(str(path)).shape == (3, 16, 44)


class TestSaveImages:
    def test_reads_back(self, tmp_path):
        x = _images((3, 3, 8, 10))
        paths = save_images(x, tmp_path / "out", ["a", "unit_7", "c"])
        assert paths == [tmp_path / "out" / f"{n}.png" for n in ["a", "unit_7", "c"]]
        shown = as_png_bytes(to_display(x))
        for i, path in enumerate(paths):
            image = read_image(str(path))
            assert image.shape == (3, 8, 10)
            assert torch.equal(image, shown[i])

    def test_per_image_normalization(self, tmp_path):
        # each file is normalized on its own: the same image saved next to a very different one is unchanged
        x = _images((2, 3, 8, 8))
        alone = read_image(str(save_images(x[:1], tmp_path / "a", ["x"])[0]))
        x[1] *= 1000
        together = read_image(str(save_images(x, tmp_path / "b", ["x", "y"])[0]))
        assert torch.equal(alone, together)

    def test_scale_and_grey(self, tmp_path):
        x = _images((2, 1, 5, 7))
        paths = save_images(x, tmp_path, ["p", "q"], display="clamp", scale=3)
        image = read_image(str(paths[1]))
        assert image.shape == (3, 15, 21)
        torch.testing.assert_close(image[0, ::3, ::3], as_png_bytes(x[1, 0].clamp(0, 1)), rtol=0, atol=0)

    @pytest.mark.parametrize("names", [["a"], ["a", "b", "c"], []])
    def test_exception_names_length(self, tmp_path, names):
        directory = tmp_path / "never"
        with pytest.raises(ValueError, match=f"2 images but {len(names)} names"):
            save_images(_images((2, 3, 8, 8)), directory, names)
        assert not directory.exists()  # nothing half-written


def test_annotated_adversarial_grid_has_titles_and_captions():
    """examples.png says what it shows: a title over each column, the predicted class under each image; the
    tiles themselves are those of adversarial_grid."""
    from inputopt.results import adversarial_grid, annotated_adversarial_grid

    torch.manual_seed(0)
    clean, adversarial = torch.rand(2, 1, 16, 16), torch.rand(2, 2, 1, 16, 16)
    args = (clean, adversarial, [0.1, 0.3], torch.tensor([3, 4]), torch.tensor([[5, 6], [4, 7]]))
    picture = annotated_adversarial_grid(*args, scale=2)
    named = annotated_adversarial_grid(*args, class_names=[f"class number {k}" for k in range(10)], scale=2)
    plain = adversarial_grid(clean, adversarial, scale=2)
    columns, line, tile = 5, 14, 32
    column = picture.shape[2] // columns
    assert picture.shape[1] == line + 2 * (tile + 2 + line)
    title = picture[:, :line]
    for c in range(columns):  # every column has a title (dark pixels in its part of the first line)
        assert (title[:, :, c * column:(c + 1) * column] < 0.5).any()
    for i in range(2):
        top = line + i * (tile + 2 + line)
        caption = picture[:, top + tile + 1:top + tile + line]
        assert all((caption[:, :, c * column:(c + 1) * column] < 0.5).any() for c in range(columns))
        left = (column - tile) // 2
        expected = plain[:, 2 + i * (tile + 2):2 + i * (tile + 2) + tile, 2:2 + tile]
        assert torch.allclose(picture[:, top:top + tile, left:left + tile], expected, atol=1 / 255)
    assert named.shape[2] > picture.shape[2]  # names are wider than indices: the columns grow to fit them


@pytest.mark.parametrize(("name", "text", "message"), [
    ("metrics.json", '{"units": {"0": ', r"cannot read .*metrics.json \(corrupt or truncated: Expecting value"),
    ("sweep.yaml", "steps: [1, 2\n", r"cannot read .*sweep.yaml \(corrupt or truncated"),
    ("atlas.yaml", "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")),
     r"atlas.yaml: the YAML expands to more than \d+ values"),
])
def test_read_record_names_a_corrupt_or_hostile_file(tmp_path, name, text, message):
    from inputopt.results import read_record

    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        read_record(tmp_path / name)
