"""seeded_noise: a row's noise depends only on (seed, key, occurrence)."""

from __future__ import annotations

import torch

from inputopt.functional import seeded_noise

SHAPE = (3, 8, 8)


class TestSeededNoise:
    def test_smoke(self):
        x = seeded_noise(SHAPE, keys=[1, 2, 3])
        assert x.shape == (3, *SHAPE)
        assert x.dtype == torch.float32

    def test_row_independent_of_batch(self):
        batch = seeded_noise(SHAPE, keys=[5, 9, 700], seed=3)
        for i, key in enumerate([5, 9, 700]):
            alone = seeded_noise(SHAPE, keys=[key], seed=3)
            assert torch.equal(batch[i], alone[0])

    def test_order_independent(self):
        a = seeded_noise(SHAPE, keys=[1, 2, 3, 4], seed=0)
        b = seeded_noise(SHAPE, keys=[4, 2, 1, 3], seed=0)
        assert torch.equal(a[[3, 1, 0, 2]], b)

    def test_sharded_batches_match(self):
        # two devices each holding half of the units produce the same rows as one device
        keys = [10, 11, 12, 13, 14]
        full = seeded_noise(SHAPE, keys, seed=1)
        halves = torch.cat([seeded_noise(SHAPE, keys[:2], seed=1), seeded_noise(SHAPE, keys[2:], seed=1)])
        assert torch.equal(full, halves)

    def test_seeds_differ(self):
        a = seeded_noise(SHAPE, keys=[1, 2], seed=0)
        b = seeded_noise(SHAPE, keys=[1, 2], seed=1)
        assert not torch.allclose(a[0], b[0])
        assert not torch.allclose(a[1], b[1])
        # different keys differ too
        assert not torch.allclose(a[0], a[1])

    def test_reproducible(self):
        assert torch.equal(seeded_noise(SHAPE, [3, 1], seed=9), seeded_noise(SHAPE, [3, 1], seed=9))

    def test_repeated_keys(self):
        x = seeded_noise(SHAPE, keys=[5, 5, 5], seed=0)
        assert not torch.allclose(x[0], x[1])
        assert not torch.allclose(x[1], x[2])
        assert not torch.allclose(x[0], x[2])
        # the first occurrence is the row the key gets alone; other keys do not shift the count
        assert torch.equal(x[0], seeded_noise(SHAPE, keys=[5], seed=0)[0])
        y = seeded_noise(SHAPE, keys=[2, 5, 7, 5], seed=0)
        assert torch.equal(y[1], x[0])
        assert torch.equal(y[3], x[1])

    def test_mean_std(self):
        x = seeded_noise((1, 200, 200), keys=[0, 1], seed=0, mean=3.0, std=0.5)
        torch.testing.assert_close(x.flatten(1).mean(1), torch.full((2,), 3.0), rtol=0, atol=0.01)
        torch.testing.assert_close(x.flatten(1).std(1), torch.full((2,), 0.5), rtol=0.02, atol=0)

    def test_default_std(self):
        x = seeded_noise((1, 200, 200), keys=[4], seed=0)
        torch.testing.assert_close(x.mean(), torch.tensor(0.0), rtol=0, atol=1e-3)
        torch.testing.assert_close(x.std(), torch.tensor(0.01), rtol=0.02, atol=0)

    def test_mean_std_scaling_exact(self):
        unit = seeded_noise(SHAPE, keys=[1, 2], seed=4, mean=0.0, std=1.0)
        scaled = seeded_noise(SHAPE, keys=[1, 2], seed=4, mean=-2.0, std=0.25)
        torch.testing.assert_close(scaled, unit * 0.25 - 2.0)
