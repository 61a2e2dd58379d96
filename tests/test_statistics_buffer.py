"""StatisticsBuffer: the drop-in mode's cheap per-step statistics, checked
against sums over samples written as loops."""

import numpy as np
import pytest
import torch
from helpers import assert_statistics_match, loop_statistics

from pml_htl.tree import StatisticsBuffer


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-12), (torch.float32, 1e-6)])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("capacity", [5, 12, 1000])
def test_buffer_matches_loops(dtype, rtol, normalize, capacity):
    g = torch.Generator().manual_seed(0)
    batches = []
    for size in (4, 7, 3, 13, 6):  # 13 > capacity 5 and 12: added at once
        y = torch.randint(-3, 9, (size,), generator=g)
        batches.append((torch.randn(size, 6, generator=g, dtype=dtype), y))
    buffer = StatisticsBuffer(6, normalize=normalize, capacity=capacity)
    for i, (x, y) in enumerate(batches):
        buffer.add(x, y)
        if i == 2:  # reading in the middle flushes and changes nothing else
            assert_statistics_match(buffer.flush(), loop_statistics(batches[:3], normalize), rtol)
    assert_statistics_match(buffer.flush(), loop_statistics(batches, normalize), rtol)
    assert_statistics_match(buffer.flush(), loop_statistics(batches, normalize), rtol)  # idempotent


@pytest.mark.parametrize("first", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("normalize", [True, False])
def test_batches_of_mixed_dtypes(first, normalize):
    """The first batch sets the buffer's dtype (float64 or float32); later batches
    of any floating dtype are converted into it."""
    g = torch.Generator().manual_seed(1)
    dtypes = [first, torch.float64, torch.float16, torch.float32, torch.bfloat16]
    batches = [
        (torch.randn(5, 4, generator=g).to(dtype), torch.randint(0, 3, (5,), generator=g))
        for dtype in dtypes
    ]
    buffer = StatisticsBuffer(4, normalize=normalize, capacity=12)
    for x, y in batches:
        buffer.add(x, y)
    rtol = 1e-12 if first == torch.float64 else 1e-6
    assert_statistics_match(buffer.flush(), loop_statistics(batches, normalize), rtol)


def test_half_precision_and_zero_rows():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]], dtype=torch.bfloat16)
    y = torch.tensor([1, 1, 2])
    buffer = StatisticsBuffer(2)
    buffer.add(x, y)
    s = buffer.flush()
    # a zero row stays zero after normalising and adds nothing to Q
    np.testing.assert_allclose(s.sums.numpy(), [[0.6, 0.8], [1.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(s.squared_norms.numpy(), [1.0, 1.0])
    np.testing.assert_array_equal(s.counts.numpy(), [2.0, 1.0])


def test_buffer_does_not_keep_the_graph():
    x = torch.randn(4, 3, requires_grad=True)
    buffer = StatisticsBuffer(3)
    buffer.add(x * 2, torch.tensor([0, 0, 1, 1]))
    assert not buffer.flush().sums.requires_grad
