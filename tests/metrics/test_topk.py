"""Top-k dataset examples: the streaming state equals torch.topk over the whole data, whatever the batches
or the split between processes."""

from __future__ import annotations

import pytest
import torch

from inputopt.metrics import TopKExamples, merge_top_k, unit_scores
from inputopt.metrics.topk import _merge_processes


def scores_and_positions(n=50, units=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, units, generator=g), torch.randint(0, 64, (n, units), generator=g)


def test_streaming_top_k_equals_topk_over_the_whole_data():
    scores, positions = scores_and_positions()
    metric = TopKExamples(num_units=4, k=5)
    for chunk in torch.arange(50).split(7):
        metric.update(scores[chunk], chunk, positions[chunk])
    result = metric.compute()
    values, indices = scores.T.topk(5, dim=1)
    torch.testing.assert_close(result["values"], values)
    torch.testing.assert_close(result["indices"], indices)
    torch.testing.assert_close(result["positions"], positions.T.gather(1, indices))


def test_merge_of_two_processes_equals_one():
    """The dist_reduce_fx merge: the states of two halves (interleaved, as the distributed sampler splits)
    give the state of one pass."""
    scores, positions = scores_and_positions(seed=1)
    whole, halves = TopKExamples(4, k=6), [TopKExamples(4, k=6), TopKExamples(4, k=6)]
    whole.update(scores, torch.arange(50), positions)
    for rank, half in enumerate(halves):
        rows = torch.arange(rank, 50, 2)
        half.update(scores[rows], rows, positions[rows])
    merged = _merge_processes(torch.stack([half.top for half in halves]))
    torch.testing.assert_close(merged, whole.top)


def test_ties_are_broken_by_the_lowest_index_whatever_the_order():
    values = torch.tensor([[2.0, 1.0, 2.0, 2.0]])
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        idx = torch.tensor([[10, 11, 12, 13]])[:, order]
        kept = merge_top_k(values[:, order], idx, torch.zeros_like(idx), 2)
        assert kept[1].tolist() == [[10, 12]]


def test_fewer_samples_than_k_leave_empty_slots():
    metric = TopKExamples(num_units=1, k=3)
    metric.update(torch.tensor([[1.5]]), torch.tensor([4]))
    result = metric.compute()
    assert result["indices"].tolist() == [[4, -1, -1]] and result["values"][0, 1] == float("-inf")


def test_unit_scores_are_channel_maxima_and_their_positions():
    acts = torch.randn(3, 5, 4, 6, generator=torch.Generator().manual_seed(2))
    scores, positions = unit_scores(acts, [4, 1])
    for b in range(3):
        for j, c in enumerate([4, 1]):
            assert scores[b, j] == acts[b, c].max()
            assert acts[b, c].flatten()[positions[b, j]] == acts[b, c].max()
    flat, none = unit_scores(acts.flatten(2).mean(2), [0, 2])
    assert torch.equal(flat, acts.flatten(2).mean(2)[:, [0, 2]]) and (none == -1).all()


def test_exception():
    with pytest.raises(ValueError, match="units must be in"):
        unit_scores(torch.zeros(1, 3, 2, 2), [3])
    with pytest.raises(ValueError, match="k must be"):
        TopKExamples(2, k=0)
    with pytest.raises(ValueError, match=r"scores must be \(B, 2\)"):
        TopKExamples(2).update(torch.zeros(3, 3), torch.arange(3))
