"""random_sphere_points and sphere_label_change, checked against geometry with a known answer."""

from __future__ import annotations

import math

import pytest
import torch

from inputopt.functional import random_sphere_points, sphere_label_change, sphere_label_changes


def _distances(points: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    return (points.double() - center.double()).flatten(1).norm(dim=1)


class TestRandomSpherePoints:
    @pytest.mark.parametrize("shape", [(3, 4, 5), (7,), (1, 2, 2)])
    @pytest.mark.parametrize("radius", [0.5, 2.0, 300.0])
    def test_radius_and_shape(self, shape, radius):
        g = torch.Generator().manual_seed(0)
        center = torch.randn(shape, generator=g)
        points = random_sphere_points(center, radius, 50, generator=g)
        assert points.shape == (50, *shape)
        assert points.dtype == center.dtype
        torch.testing.assert_close(_distances(points, center), torch.full((50,), radius, dtype=torch.float64),
                                   rtol=1e-5, atol=0)

    @pytest.mark.parametrize("radius", [1e-3, torch.tensor(1.5)])
    def test_tensor_radius_and_float64(self, radius):
        # float64 keeps tiny radii around a unit-scale centre exact (float32 cannot: its rounding of
        # center + offset is ~1e-7 absolute)
        center = torch.randn(2, 3, dtype=torch.float64)
        points = random_sphere_points(center, radius, 10)
        assert points.dtype == torch.float64
        torch.testing.assert_close(_distances(points, center), torch.full((10,), float(radius), dtype=torch.float64),
                                   rtol=1e-10, atol=0)

    def test_reproducible_with_seed(self):
        center = torch.zeros(3, 4, 4)
        a = random_sphere_points(center, 1.0, 20, torch.Generator().manual_seed(7))
        b = random_sphere_points(center, 1.0, 20, torch.Generator().manual_seed(7))
        c = random_sphere_points(center, 1.0, 20, torch.Generator().manual_seed(8))
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)
        # the points within one call are distinct
        assert not torch.allclose(a[0], a[1])

    def test_directions_uniform(self):
        n = 20000
        center = torch.tensor([5.0, -2.0, 1.0])
        points = random_sphere_points(center, 3.0, n, torch.Generator().manual_seed(0))
        directions = (points.double() - center.double()) / 3.0
        # mean direction ~ 0 (std per component 1/sqrt(3n) ~ 0.004) ...
        assert directions.mean(0).norm() < 0.03
        # ... and the second moment is isotropic, I/3 (a biased direction law would break one of them)
        second_moment = directions.T @ directions / n
        torch.testing.assert_close(second_moment, torch.eye(3, dtype=torch.float64) / 3, rtol=0, atol=0.02)
        # every octant gets about 1/8 of the points
        octant = ((directions > 0).long() * torch.tensor([1, 2, 4])).sum(1)
        counts = torch.bincount(octant, minlength=8).double() / n
        torch.testing.assert_close(counts, torch.full((8,), 1 / 8, dtype=torch.float64), rtol=0, atol=0.015)

    @pytest.mark.parametrize("n", [0, -3])
    def test_exception_n(self, n):
        with pytest.raises(ValueError, match=f"n must be >= 1, got {n}"):
            random_sphere_points(torch.zeros(3), 1.0, n)

    @pytest.mark.parametrize("radius", [0.0, -1.0, torch.tensor([1.0, 2.0])])
    def test_exception_radius(self, radius):
        with pytest.raises(ValueError, match="radius must be one positive number"):
            random_sphere_points(torch.zeros(3), radius, 4)


def linear_classifier(normal: torch.Tensor, offset: float = 0.0):
    """Label 1 on the side of the hyperplane ``normal·x + offset = 0`` that ``normal`` points to, else 0."""
    normal = normal.flatten()

    def classify(x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1).double() @ normal.double() + offset > 0).long()

    return classify


class TestSphereLabelChange:
    def test_smoke(self):
        classify = linear_classifier(torch.ones(4))
        out = sphere_label_change(classify, torch.full((4,), 1.0), radius=0.5, n=10)
        assert isinstance(out, float)
        assert 0.0 <= out <= 1.0

    @pytest.mark.parametrize("dim", [2, 3, 50])
    def test_sphere_inside_half_space(self, dim):
        # the center is at distance d = 2 from the hyperplane; no point of a sphere of radius 1.9 crosses it
        normal = torch.randn(dim, generator=torch.Generator().manual_seed(dim))
        unit = normal / normal.norm()
        center = 2.0 * unit
        classify = linear_classifier(normal)
        assert sphere_label_change(classify, center, radius=1.9, n=500) == 0.0
        # and the same sphere moved to the other side flips nothing either
        assert sphere_label_change(classify, -center, radius=1.9, n=500) == 0.0

    @pytest.mark.parametrize("dim", [2, 3, 20])
    def test_center_on_hyperplane(self, dim):
        normal = torch.randn(dim, generator=torch.Generator().manual_seed(dim))
        center = torch.zeros(dim)  # on the hyperplane; predicted label 0, half the sphere is label 1
        fraction = sphere_label_change(linear_classifier(normal), center, radius=1.0, n=4000,
                                       generator=torch.Generator().manual_seed(0))
        assert abs(fraction - 0.5) < 0.04

    def test_circle_crossing_known_fraction(self):
        # 2-D: a circle of radius r whose centre is at distance d < r from a line crosses it on an arc of
        # 2·arccos(d/r) out of 2π, so the fraction is arccos(d/r)/π (1/3 for d = r/2)
        normal = torch.tensor([0.6, 0.8])
        center = -0.5 * normal  # distance 0.5, label 0
        fraction = sphere_label_change(linear_classifier(normal), center, radius=1.0, n=20000,
                                       generator=torch.Generator().manual_seed(1))
        assert abs(fraction - math.acos(0.5) / math.pi) < 0.015

    def test_sphere_crossing_known_fraction(self):
        # 3-D (Archimedes): the cap beyond a plane at distance d from the centre has area fraction (1 - d/r)/2
        normal = torch.tensor([1.0, 2.0, 2.0])
        center = 0.4 * normal / 3.0  # distance 0.4 on the label-1 side
        fraction = sphere_label_change(linear_classifier(normal), center, radius=1.0, n=20000,
                                       generator=torch.Generator().manual_seed(2))
        assert abs(fraction - (1 - 0.4) / 2) < 0.015

    @pytest.mark.parametrize("n, chunk_size", [(10, 3), (7, 250), (9, 9)])
    def test_chunks_cover_n_points(self, n, chunk_size):
        sizes = []
        center = torch.zeros(2, 2)

        def classify(x):
            sizes.append(x.shape[0])
            assert x.shape[1:] == center.shape
            return torch.zeros(x.shape[0], dtype=torch.long)

        assert sphere_label_change(classify, center, 1.0, n=n, chunk_size=chunk_size) == 0.0
        assert sizes[0] == 1  # the centre
        assert sum(sizes[1:]) == n
        assert max(sizes[1:]) <= chunk_size

    def test_reproducible_with_seed(self):
        classify = linear_classifier(torch.tensor([1.0, -1.0, 0.5]))
        center = torch.tensor([0.1, 0.0, 0.0])
        a = sphere_label_change(classify, center, 1.0, n=300, generator=torch.Generator().manual_seed(3))
        b = sphere_label_change(classify, center, 1.0, n=300, generator=torch.Generator().manual_seed(3))
        assert a == b
        assert 0.0 < a < 1.0

    def test_exception_radius(self):
        with pytest.raises(ValueError, match="radius"):
            sphere_label_change(linear_classifier(torch.ones(3)), torch.zeros(3), radius=-1.0, n=10)

    def test_exception_n(self):
        with pytest.raises(ValueError, match="n and chunk_size must be >= 1"):
            sphere_label_change(linear_classifier(torch.ones(3)), torch.zeros(3), radius=1.0, n=0)


class TestSphereLabelChanges:
    """The batched check: several centres share forward passes, each draws its own points."""

    def test_equals_one_centre_at_a_time_with_its_own_generator(self):
        classify = linear_classifier(torch.tensor([1.0, -1.0, 0.5]))
        centers = torch.tensor([[0.1, 0.0, 0.0], [0.3, 0.2, -0.1], [-0.2, 0.1, 0.0], [1.0, 1.0, 1.0]])
        radii = torch.tensor([1.0, 0.0, 0.5, 2.0])
        seeds = [3, 4, 5, 6]
        batched = sphere_label_changes(classify, centers, radii, 300,
                                       [torch.Generator().manual_seed(s) for s in seeds], chunk_size=128)
        for i, seed in enumerate(seeds):
            if radii[i] > 0:
                alone = sphere_label_change(classify, centers[i], radii[i].item(), 300,
                                            torch.Generator().manual_seed(seed), chunk_size=128)
                assert batched[i].item() == alone
        assert batched[1].isnan() and not batched[[0, 2, 3]].isnan().any()
        assert ((batched[[0, 2, 3]] > 0) & (batched[[0, 2, 3]] < 1)).all()

    def test_forward_passes_mix_centres_and_respect_the_chunk_size(self):
        sizes = []

        def classify(x):
            sizes.append(x.shape[0])
            return torch.zeros(x.shape[0], dtype=torch.long)

        fractions = sphere_label_changes(classify, torch.zeros(5, 3), torch.ones(5), 30,
                                         labels=torch.zeros(5, dtype=torch.long), chunk_size=100)
        assert fractions.tolist() == [0.0] * 5
        assert sizes == [90, 60]  # three centres' points, then two: 150 points in 2 passes, not 5

    def test_labels_differ_from_centre_label(self):
        classify = linear_classifier(torch.tensor([1.0, 0.0]))
        # the given labels are all wrong for points far on the positive side: every point "changes"
        out = sphere_label_changes(classify, torch.tensor([[5.0, 0.0]]), [1.0], 20,
                                   labels=torch.tensor([0]))
        assert out.tolist() == [1.0]

    def test_needs_one_radius_and_generator_per_centre(self):
        classify = linear_classifier(torch.ones(2))
        with pytest.raises(ValueError, match="one radius per centre"):
            sphere_label_changes(classify, torch.zeros(2, 2), [1.0], 10)
        with pytest.raises(ValueError, match="one generator per centre"):
            sphere_label_changes(classify, torch.zeros(2, 2), [1.0, 1.0], 10, [torch.Generator()])


def test_points_are_clipped_to_the_box_only_when_asked():
    """By default the points lie exactly on the sphere (pixels outside [0, 1] kept); clip=(0, 1) clamps them."""
    from inputopt.functional.sphere import sphere_check

    seen = []

    def classify(x):
        seen.append(x.clone())
        return (x.flatten(1).amax(1) > 1).long()  # "changed" exactly when a pixel leaves the box above 1

    x = torch.full((2, 1, 4, 4), 0.9)
    fractions, radii = sphere_check(classify, x, x + 0.05, n=64)
    points = torch.cat(seen[1:])
    assert points.max() > 1 and points.min() >= 0.9 - radii.max() - 1e-6  # on the sphere, outside the box
    assert (fractions > 0.5).all()  # most points push some pixel above 1
    seen.clear()
    fractions, _ = sphere_check(classify, x, x + 0.05, n=64, clip=(0.0, 1.0))
    points = torch.cat(seen[1:])
    assert points.min() >= 0 and points.max() <= 1
    assert (fractions == 0).all()
