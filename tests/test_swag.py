"""SWAG-V: supervoxels over T×H×W, painted with the mean guided-backprop map."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from explainers import explain
from explainers.swag import segment_means

BOX = (slice(2, 6), slice(16, 32), slice(20, 36))


class CuboidEnergy(nn.Module):
    """Class 0 is the texture energy inside BOX; nothing else matters."""

    def forward(self, x):
        energy = x[:, :, BOX[0], BOX[1], BOX[2]].pow(2).mean((1, 2, 3, 4))
        return torch.stack([8 * energy, torch.full_like(energy, 4.0)], 1)


def _clip() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 8, 56, 56, generator=g) * 0.2
    x[:, 0, BOX[0], BOX[1], BOX[2]] += 1.5                     # a red cuboid
    return x


def test_segment_means_paints_each_segment_with_its_mean():
    labels = torch.tensor([[[0, 0, 1], [1, 2, 2]]])
    values = torch.tensor([[[1.0, 3.0, 4.0], [6.0, 0.0, 1.0]]])
    assert torch.equal(segment_means(values, labels), torch.tensor([[[2.0, 2.0, 5.0], [5.0, 0.5, 0.5]]]))


@pytest.mark.parametrize("method", ["swag_v_i", "swag_v_g", "swag_v_ig"])
def test_top_supervoxel_overlaps_the_evidence(method):
    e = explain(CuboidEnergy(), _clip(), method, target=0, segments=60)
    labels = e.extras["supervoxels"]
    assert labels.shape == (8, 56, 56) and labels.min() == 0 and e.extras["segments"] == int(labels.max()) + 1
    top = labels == labels.flatten()[e.saliency.flatten().argmax()]
    inside = torch.zeros_like(top)
    inside[BOX] = True
    assert (top & inside).sum() > 0.5 * top.sum()              # the best supervoxel lies mostly in the cuboid
    frames_spanned = [len(torch.unique(torch.nonzero(labels == k)[:, 0])) for k in range(e.extras["segments"])]
    assert sorted(frames_spanned)[len(frames_spanned) // 2] >= 3  # supervoxels are 3-D: most span several frames
    assert e.forward_passes == 1 and e.backward_passes == 1
    for k in torch.unique(labels):                              # piecewise constant on the supervoxels
        assert torch.unique(e.saliency[labels == k]).numel() == 1
