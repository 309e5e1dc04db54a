"""project_lp_ball and lp_norms against element-wise references."""

from __future__ import annotations

import pytest
import torch

from inputopt.functional import lp_norms, project_lp_ball


def _pair(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)


def test_linf_clamps_every_element():
    x, c = _pair()
    out = project_lp_ball(x, c, eps=0.3)
    torch.testing.assert_close(out, c + torch.maximum(torch.minimum(x - c, torch.tensor(0.3)), torch.tensor(-0.3)))
    assert lp_norms(out - c, "Linf").max() <= 0.3 + 1e-6


def test_l2_scales_long_deltas_to_the_radius_and_keeps_short_ones():
    x, c = _pair()
    x[0] = c[0] + 0.001  # inside the ball: unchanged
    out = project_lp_ball(x, c, eps=1.0, norm="L2")
    assert torch.equal(out[0], x[0])
    torch.testing.assert_close(lp_norms(out[1:] - c[1:], "L2"), torch.ones(3))
    cosine = torch.nn.functional.cosine_similarity((out - c).flatten(1), (x - c).flatten(1))
    torch.testing.assert_close(cosine, torch.ones(4))  # the direction is kept


@pytest.mark.parametrize("norm", ["Linf", "L2"])
def test_projection_is_idempotent(norm):
    x, c = _pair(1)
    once = project_lp_ball(x, c, 0.5, norm)
    torch.testing.assert_close(project_lp_ball(once, c, 0.5, norm), once)


def test_exceptions():
    x, c = _pair()
    with pytest.raises(ValueError, match="eps must be >= 0"):
        project_lp_ball(x, c, -1.0)
    with pytest.raises(ValueError, match="norm must be 'Linf' or 'L2'"):
        lp_norms(x, "L1")
