"""Cross-check of our periodic cell list against torchmd-net's OptimizedDistance (orthorhombic boxes).

torchmd-net 3.1's cell strategy disagreed with brute force for triclinic reduced boxes in our checks, which is
why ``openmm_mlcg.nn.neighbors`` carries its own O(N) cell list; for orthorhombic boxes both must agree.
"""
import pytest
import torch

from openmm_mlcg.nn.neighbors import build_edges

torchmdnet_utils = pytest.importorskip("torchmdnet.models.utils")


@pytest.mark.parametrize("seed", [0, 1])
def test_radius_edges_match_torchmdnet_orthorhombic(seed):
    g = torch.Generator().manual_seed(seed)
    box = torch.diag(torch.tensor([3.0, 3.4, 2.8]))
    pos = torch.rand(300, 3, generator=g) * torch.diagonal(box) + 5 * torch.randn(300, 3, generator=g).round()
    cutoff = 0.7
    ei, ev, et = build_edges(pos, box, cutoff, torch.zeros(2, 0, dtype=torch.long))
    ours = set(map(tuple, ei.t().tolist()))
    wrapped = torch.remainder(pos, torch.diagonal(box))
    dist = torchmdnet_utils.OptimizedDistance(cutoff_lower=0.0, cutoff_upper=cutoff, max_num_pairs=-300,
                                              strategy="cell", box=box, loop=False, include_transpose=True,
                                              resize_to_fit=True)
    idx, _, _ = dist(wrapped, box=box)
    theirs = set(map(tuple, idx.t().tolist()))
    assert len(ours) > 1000
    assert ours == theirs
    # and the minimum-image vectors are shorter than the cutoff
    assert float(ev.norm(dim=1).max()) < cutoff
