"""AOSA and AOSA-approx: flow tracks against a known motion, frame-out, tube masks against boxes drawn one by one,
K = 1 against single tubes computed by hand, and the first-order estimate against the exact scores on a model that
is linear in the input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explainers import explain
from explainers.aosa import Tracks, farneback_flow, letterbox_rows, track_anchors, tube_holes
from explainers.maps import normalise
from explainers.metrics import spearman


def _moving_square(t: int, size: int, start: tuple[int, int], velocity: tuple[float, float], side: int = 20
                   ) -> torch.Tensor:
    """T×H×W×3 in [0, 1]: a textured square moving at ``velocity`` (rows, cols per frame) on a plain background."""
    rng = np.random.default_rng(0)
    texture = rng.uniform(0.2, 1.0, (side // 4 + 1, side // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)[:side, :side]
    frames = np.full((t, size, size, 3), 0.5)
    for k in range(t):
        y, x = int(round(start[0] + velocity[0] * k)), int(round(start[1] + velocity[1] * k))
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + side, size), min(x + side, size)
        if y1 > y0 and x1 > x0:
            frames[k, y0:y1, x0:x1] = texture[y0 - y:y1 - y, x0 - x:x1 - x]
    return torch.from_numpy(frames).float()


def test_tracks_follow_a_square_with_known_velocity():
    rgb = _moving_square(8, 64, (10, 8), (1.0, 2.0))
    tracks = track_anchors(farneback_flow(rgb), (64, 64), stride=4)
    start = tracks.positions[:, 0]
    inside = ((start[:, 0] >= 14) & (start[:, 0] < 26) & (start[:, 1] >= 12) & (start[:, 1] < 24))
    assert inside.sum() >= 6
    expected = start[inside, None, :] + torch.arange(8)[None, :, None] * torch.tensor([1, 2])
    error = (tracks.positions[inside] - expected).abs().max(-1).values        # per anchor and frame
    assert (error <= 2 * torch.arange(8).clamp(min=1)).all()                  # ≤ 2 px per frame travelled
    assert error.float().mean() <= 2.0
    assert tracks.tracked[inside].all()


def test_frame_out_stops_the_occluder():
    rgb = _moving_square(8, 48, (14, 22), (0.0, 3.0))                          # leaves on the right
    tracks = track_anchors(farneback_flow(rgb), (48, 48), stride=4)
    start = tracks.positions[:, 0]
    on_square = torch.nonzero((start[:, 0] >= 18) & (start[:, 0] < 30) & (start[:, 1] >= 36) & (start[:, 1] < 42))[:, 0]
    lost = on_square[~tracks.tracked[on_square, -1]]
    assert len(lost) > 0
    holes = tube_holes(tracks, lost, (48, 48), occluder=8)
    for i, anchor in enumerate(lost):
        gone = int(torch.nonzero(~tracks.tracked[anchor])[0])
        assert holes[i, :gone].any() and not holes[i, gone:].any()


@pytest.mark.parametrize("occluder", [8, 7])
def test_tube_masks_are_the_union_of_their_boxes(occluder):
    """Each group's mask is the union of its tubes' boxes of ``occluder`` pixels from anchor − occluder // 2
    (clipped at the borders, absent once a track is lost), drawn here box by box."""
    g = torch.Generator().manual_seed(0)
    tracks = Tracks(torch.randint(-6, 54, (10, 5, 2), generator=g), torch.rand(10, 5, generator=g) > 0.2)
    groups = torch.randint(0, 10, (7, 3), generator=g)
    holes = tube_holes(tracks, groups, (40, 48), occluder=occluder)
    a0, a1 = occluder // 2, occluder - occluder // 2
    drawn = torch.zeros(7, 5, 40, 48)
    for b, group in enumerate(groups):
        for a in group:
            for t in range(5):
                if tracks.tracked[a, t]:
                    y, x = tracks.positions[a, t].tolist()
                    drawn[b, t, max(y - a0, 0):max(y + a1, 0), max(x - a0, 0):max(x + a1, 0)] = 1
    assert torch.equal(holes, drawn)


def test_letterbox_bars_restrict_anchors_and_end_tracks():
    """Dark bands in the top and bottom rows: anchors start in rows 12–100 only, and a square moving down leaves
    the frame at row 96 instead of the frame's edge; a clip without bars keeps all 14×14 anchors."""
    rgb = _moving_square(8, 112, (56, 40), (5.0, 0.0), side=24)
    assert letterbox_rows(rgb) is None
    plain = track_anchors(farneback_flow(rgb), (112, 112), stride=8)
    assert len(plain.positions) == 14 * 14
    rgb[:, :4] = rgb[:, -4:] = 0.0
    bars = letterbox_rows(rgb)
    assert bars == ((12, 100), (16, 96))
    flow = farneback_flow(rgb)
    tracks = track_anchors(flow, (112, 112), stride=8, letterbox=bars)
    rows = tracks.positions[:, 0, 0]
    assert len(rows) == 12 * 14 and rows.min() == 12 and rows.max() == 100
    later = tracks.positions[:, 1:, 0][tracks.tracked[:, 1:]]              # the rule applies from frame 1 on
    assert later.min() >= 16 and later.max() <= 96
    on_square = (tracks.positions[:, 0, 0] == 68) & (tracks.positions[:, 0, 1] >= 44) & (tracks.positions[:, 0, 1] < 60)
    assert on_square.sum() == 2 and not tracks.tracked[on_square, -1].any()    # at 5 px/frame: row 98 in frame 6
    unbarred = track_anchors(flow, (112, 112), stride=8)                        # the same flow, frame edge at 111
    assert unbarred.tracked[(unbarred.positions[:, 0, 0] == 68) & (unbarred.positions[:, 0, 1] >= 44)
                            & (unbarred.positions[:, 0, 1] < 60), -1].all()


class Linear(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(2, 3 * 8 * 32 * 32, generator=g) * scale, requires_grad=False)

    def forward(self, x):
        return x.flatten(1) @ self.w.T


def _clip() -> torch.Tensor:
    rgb = _moving_square(8, 32, (6, 4), (1.0, 1.0), side=12)
    return (rgb.permute(3, 0, 1, 2)[None] - 0.5) / 0.25


def test_k1_equals_the_single_tube_map_by_hand():
    model, x = Linear(0.01), _clip()
    e = explain(model, x, "aosa", target=0, k=1, stride=8, occluder=8, fill="zero")
    assert e.forward_passes == 1 + 16                # 16 masks + the clean clip (for the target and p0)
    from explainers.aosa import Tracks
    tracks = Tracks(e.extras["tracks"], e.extras["tracked"])
    with torch.no_grad():
        p0 = model(x).softmax(-1)[0, 0]
        total = torch.zeros(8, 32, 32)
        for i in range(16):
            keep = 1 - tube_holes(tracks, torch.tensor([i]), (32, 32), 8)[0]
            p = model(x * keep).softmax(-1)[0, 0]
            total += (p - p0) * keep / keep.mean()
    assert torch.allclose(e.saliency, normalise(total / 16), atol=1e-4)
    k3 = explain(model, x, "aosa", target=0, k=3, stride=8, occluder=8, fill="zero")
    assert k3.extras["groups"].shape == (16, 3) and (k3.extras["groups"][:, 0] == torch.arange(16)).all()


def test_approx_ranks_like_exact_on_a_linear_model():
    model, x = Linear(0.002), _clip()
    exact = explain(model, x, "aosa", target=0, stride=4, occluder=8, fill="zero")
    approx = explain(model, x, "aosa_approx", target=0, stride=4, occluder=8, fill="zero")
    assert spearman(exact.extras["scores"], approx.extras["scores"]) >= 0.7
    assert spearman(exact.saliency.flatten(), approx.saliency.flatten()) >= 0.7
    assert approx.forward_passes == approx.backward_passes <= 3   # its first gradient pass also gives p0
    exact_logit = explain(model, x, "aosa", target=0, stride=4, occluder=8, score="logit", fill="zero")
    for adjust in (False, True):                     # exact when linear, from any expansion point
        logit = explain(model, x, "aosa_approx", target=0, stride=4, occluder=8, score="logit", adjust=adjust,
                        fill="zero")
        assert torch.allclose(logit.extras["scores"], exact_logit.extras["scores"], atol=1e-3)
    assert logit.extras["expansions"]


def test_re_expansion_is_exact_at_its_own_mask_and_changes_only_the_outliers():
    """Under score="prob" the first-order estimates are not exact. The IQR rule re-expands around the most
    extreme high and the most extreme low mask, together: each of the two is then scored exactly (an expansion
    is exact at its own point), and only the outlying masks get new estimates."""
    model, x = Linear(0.002), _clip()
    model.w.data.view(2, 3, 8, 32, 32)[0, :, :, 6:18, 4:16] += 0.01      # where the square starts
    kw = dict(target=0, stride=4, occluder=8, k=1, fill="zero")
    plain = explain(model, x, "aosa_approx", adjust=False, **kw)
    adjusted = explain(model, x, "aosa_approx", **kw)
    exact = explain(model, x, "aosa", **kw).extras["scores"]
    first, again = plain.extras["scores"], adjusted.extras["scores"]
    d = first - adjusted.target_prob
    q1, q3 = d.quantile(0.25), d.quantile(0.75)
    iqr = q3 - q1
    high, low = d > q3 + 1.5 * iqr, d < q1 - 1.5 * iqr
    assert high.any() and low.any() and len(adjusted.extras["expansions"]) == 2
    assert torch.equal(again != first, high | low)
    assert adjusted.forward_passes == adjusted.backward_passes == 3
    for m in adjusted.extras["expansions"]:
        assert abs(again[m] - exact[m]) < 1e-5
    assert (first - exact)[high | low].abs().max() > 1e-2             # the first estimates were off
