"""Metrics with known answers: AUC, pointing games (incl. x/y order), localisation, insertion/deletion."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from explainers.metrics import (
    METRICS,
    auc,
    box_iou,
    insertion_deletion,
    localisation_iou,
    pointing_game,
    ranks,
    saliency_metric,
    spearman,
    temporal_pointing_game,
    unit_ranks,
)


def test_auc_of_constant_and_linear_curves():
    assert auc(np.full(29, 0.37)) == pytest.approx(0.37)
    assert auc(np.linspace(0, 1, 29)) == pytest.approx(0.5)


def test_metric_specs_state_direction_and_needs():
    assert METRICS["insertion"].higher_is_better and not METRICS["deletion"].higher_is_better
    assert METRICS["pointing"].needs == ("boxes",) and METRICS["temporal_pointing"].needs == ("window",)


def _peak(t=4, h=112, w=112, at=(0, 10, 50)):
    s = torch.zeros(t, h, w)
    s[:, at[1], at[2]] = 1.0
    return s


def test_pointing_game_by_hand_including_xy_order():
    s = _peak(at=(0, 10, 50))                                  # row 10, column 50 in every frame
    box = np.array([[45, 5, 56, 16]] * 4)                       # x0, y0, x1, y1 around (x=50, y=10)
    assert pointing_game(s, box) == 1.0
    swapped = np.array([[5, 45, 16, 56]] * 4)                   # the same box with x and y exchanged
    assert pointing_game(s, swapped) == 0.0
    near = np.array([[57, 5, 70, 16]] * 4)                      # 6.5 px right of the peak's centre (50.5)
    far = np.array([[59, 5, 70, 16]] * 4)                       # 8.5 px
    assert pointing_game(s, near) == 1.0 and pointing_game(s, far) == 0.0
    assert pointing_game(s, near, visible=np.array([True, False, False, False])) == 1.0
    big = torch.nn.functional.interpolate(s[None, None], size=(4, 224, 224))[0, 0]
    assert pointing_game(big, near * 2) == 1.0                 # tolerance scales with the frame size


def test_temporal_pointing_game():
    s = torch.rand(16, 8, 8) * 0.1
    s[5] += 1
    assert temporal_pointing_game(s, (4, 6)) == 1.0
    assert temporal_pointing_game(s, (7, 9)) == 0.0


def test_localisation_of_a_box_shaped_map():
    s = torch.zeros(3, 112, 112)
    s[:, 20:40, 60:90] = 1.0
    gt = np.array([[60, 20, 90, 40]] * 3)
    for rule in ("val", "mean"):
        assert localisation_iou(s, gt, rule=rule) == pytest.approx(1.0)
    assert localisation_iou(s, gt, rule="energy", alpha=1.0) == pytest.approx(1.0)
    assert localisation_iou(s, gt, rule="energy") > 0.8  # half of a flat box, spread over it: nearly its box
    assert box_iou(np.array([0, 0, 10, 10.]), np.array([5, 0, 15, 10.])) == pytest.approx(1 / 3)
    assert localisation_iou(torch.roll(s, 50, dims=1), gt) == 0.0  # the box moved 50 rows down: no overlap


def test_localisation_scales_each_frame_on_its_own():
    """1.0 in the box over a 0.6 floor, one frame on a 0 floor: every frame's box is the actor's (scaling the
    volume once and thresholding at α·frame max gave IoU 0.077)."""
    s = torch.full((4, 112, 112), 0.6)
    s[3] = 0.0
    s[:, 20:40, 60:90] = 1.0
    gt = np.array([[60, 20, 90, 40]] * 4)
    for rule in ("val", "mean"):
        assert localisation_iou(s, gt, rule=rule) == pytest.approx(1.0)
    assert localisation_iou(s, gt, rule="energy") > 0.8
    assert localisation_iou(torch.ones(4, 112, 112), gt) == 0.0      # a constant map points nowhere


def test_unit_ranks_modes():
    s = torch.zeros(2, 32, 32)
    s[1, 0, 0] = 1.0
    assert unit_ranks(s, "voxel")[1, 0, 0] == 0
    patch = unit_ranks(s, "patch", patch_grid=16)
    assert torch.all(patch[1, :2, :2] == 0) and patch[1, 2, 2] > 0
    frame = unit_ranks(s, "frame")
    assert torch.all(frame[1] == 0) and torch.all(frame[0] == 1)


class CountingCuboid(nn.Module):
    """P(class 0) rises with the energy inside one cuboid; counts the clips it sees."""

    box = (slice(2, 6), slice(8, 24), slice(8, 24))

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(len(x))
        e = x[:, :, self.box[0], self.box[1], self.box[2]].pow(2).mean((1, 2, 3, 4))
        return torch.stack([3 * e, torch.ones_like(e)], 1)


@pytest.fixture
def clip_and_oracle():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 8, 32, 32) * 2
    oracle = torch.zeros(8, 32, 32)
    oracle[CountingCuboid.box] = 1.0
    return x, oracle


def test_insertion_deletion_oracle_beats_inverted_and_is_batched(clip_and_oracle):
    x, oracle = clip_and_oracle
    model = CountingCuboid()
    good = insertion_deletion(model, x, oracle, target=0, steps=28, max_batch=64)
    assert model.seen == [58], "29 insertion + 29 deletion clips in one batch"
    bad = insertion_deletion(model, x, 1 - oracle, target=0, steps=28)
    assert good["insertion"].auc > bad["insertion"].auc and good["deletion"].auc < bad["deletion"].auc
    assert len(good["insertion"].probs) == 29 and good["insertion"].fractions[[0, -1]].tolist() == [0.0, 1.0]
    assert good["deletion"].probs[0] == pytest.approx(good["insertion"].probs[-1], abs=1e-6)  # both = clean clip
    one = insertion_deletion(model, x, oracle, target=0, steps=28, max_batch=1)
    assert np.allclose(one["insertion"].probs, good["insertion"].probs, atol=1e-6)
    for mode in ("patch", "frame"):
        curves = insertion_deletion(model, x, oracle, target=0, steps=8, mode=mode)
        assert curves["insertion"].auc >= insertion_deletion(model, x, 1 - oracle, 0, 8, mode)["insertion"].auc


def test_the_curves_ends_known_from_another_map_of_the_clip_save_four_forwards(clip_and_oracle):
    from explainers.metrics import curve_ends

    x, oracle = clip_and_oracle
    model = CountingCuboid()
    first = insertion_deletion(model, x, torch.rand(oracle.shape), target=0, steps=28, max_batch=64)
    alone = insertion_deletion(model, x, oracle, target=0, steps=28, max_batch=64)
    model.seen.clear()
    known = insertion_deletion(model, x, oracle, target=0, steps=28, max_batch=64, ends=curve_ends(first))
    assert model.seen == [54], "the blurred start, the clip (twice) and the deleted clip are not sent again"
    for kind in ("insertion", "deletion"):
        assert np.allclose(known[kind].probs, alone[kind].probs, atol=1e-6)
        assert known[kind].auc == pytest.approx(alone[kind].auc, abs=1e-6)


def test_deletion_into_the_blurred_clip_ends_where_insertion_starts(clip_and_oracle):
    from explainers.metrics import evaluate_map

    x, oracle = clip_and_oracle
    model = CountingCuboid()
    _, mean = evaluate_map(model, x, oracle, 0)
    _, blur = evaluate_map(model, x, oracle, 0, deletion_end="blur")
    assert blur["deletion"].probs[-1] == pytest.approx(blur["insertion"].probs[0], abs=1e-6)   # p(blurred clip)
    assert mean["deletion"].probs[-1] != pytest.approx(blur["deletion"].probs[-1], abs=1e-3)
    assert np.array_equal(blur["insertion"].probs, mean["insertion"].probs)
    with pytest.raises(ValueError, match="deletion_end must be one of"):
        evaluate_map(model, x, oracle, 0, deletion_end="grey")


def test_road_removes_the_evidence_first_for_the_oracle_last_for_its_inverse(clip_and_oracle):
    from explainers.metrics import road

    x, oracle = clip_and_oracle
    model = CountingCuboid()
    good = road(model, x, oracle, target=0, steps=28, max_batch=64)
    assert model.seen == [58], "29 MoRF + 29 LeRF clips in one batch, as insertion/deletion"
    bad = road(model, x, 1 - oracle, target=0, steps=28)
    assert good["road_morf"].auc < bad["road_morf"].auc and good["road_lerf"].auc > bad["road_lerf"].auc
    assert good["road_morf"].probs[0] == pytest.approx(good["road_lerf"].probs[0])     # both start at the clip
    assert np.array_equal(road(model, x, oracle, 0)["road_morf"].probs, good["road_morf"].probs)  # seeded noise


def test_infidelity_equals_captum_with_the_same_removals_and_prefers_the_oracle(clip_and_oracle):
    captum = pytest.importorskip("captum.metrics")
    from explainers.metrics import infidelity

    x, oracle = clip_and_oracle
    model = CountingCuboid()
    ours = infidelity(model, x, oracle, 0, samples=16, grid=(4, 8, 8), share=0.2, seed=3)
    gen = torch.Generator().manual_seed(3)

    def removals(inputs):
        cells = (torch.rand(len(inputs), 1, 4, 8, 8, generator=gen) < 0.2).float()
        masks = torch.nn.functional.interpolate(cells, size=inputs.shape[2:], mode="nearest")
        return masks.expand_as(inputs), inputs * (1 - masks)

    reference = captum.infidelity(lambda v: model(v).softmax(-1), removals, x, (oracle / 3).expand_as(x), target=0,
                                  n_perturb_samples=16, normalize=True)
    assert ours == pytest.approx(float(reference), rel=1e-3)
    assert ours < infidelity(model, x, torch.rand(oracle.shape, generator=gen), 0, samples=16, share=0.2, seed=3)


def test_imputation_keeps_what_is_kept_and_fills_from_the_neighbours():
    from explainers.maps import impute

    t, h, w = torch.meshgrid(torch.arange(8.0), torch.arange(32.0), torch.arange(32.0), indexing="ij")
    ramp = (0.1 * h + 0.05 * w + 0.2 * t)[None, None].expand(2, 3, -1, -1, -1)
    kept = (torch.rand(2, 1, 8, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    out = impute(ramp, kept)
    assert torch.equal(out[kept.bool().expand_as(out)], ramp[kept.bool().expand_as(ramp)])
    holes = ~kept.bool().expand_as(out)
    assert (out - ramp)[holes].abs().mean() < 0.25 < (ramp.mean() - ramp)[holes].abs().mean()  # a mean fill: 1.4
    assert torch.allclose(impute(torch.full((1, 3, 8, 32, 32), 0.7), kept[:1]), torch.tensor(0.7))
    assert torch.equal(impute(ramp[:1], torch.zeros(1, 1, 8, 32, 32)), torch.zeros(1, 3, 8, 32, 32))


def test_saliency_metric_prefers_a_small_sufficient_region(clip_and_oracle):
    x, oracle = clip_and_oracle
    model = CountingCuboid()
    good = saliency_metric(model, x, oracle, target=0)
    bad = saliency_metric(model, x, 1 - oracle, target=0)
    assert set(good) == {0.5, 0.75} and good[0.5] < bad[0.5]


def test_masked_predictions_keep_the_class_with_the_oracle(clip_and_oracle):
    from explainers.metrics import masked_predictions

    x, oracle = clip_and_oracle
    model = CountingCuboid()
    assert masked_predictions(model, x, oracle, keep=(0.05, 0.2)) == {0.05: 0, 0.2: 0}
    assert model.seen == [2]
    from explainers.metrics import blurred

    inverted = masked_predictions(model, x, 1 - oracle, keep=(0.05,))  # keeps no cuboid voxel at 5 %
    assert inverted == {0.05: int(model(blurred(x)).argmax())}


def test_cascading_randomisation_separates_model_dependent_methods():
    from explainers.metrics import cascading_randomisation

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    x = torch.randn(1, 3, 4, 16, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    centre = cascading_randomisation(model, x, "centre")
    assert [name for name, _ in centre] == ["6", "2", "0"]        # from the top
    assert all(rho == pytest.approx(1.0) for _, rho in centre)
    gradient = cascading_randomisation(model, x, "gradient")
    assert gradient[-1][1] < 0.5, gradient
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "randomised a copy only"


def test_ranks_sort_floats_as_integers_in_the_floats_order():
    g = torch.Generator().manual_seed(0)
    values = [torch.randn(4, 9, 9, generator=g), torch.relu(torch.randn(4, 9, 9, generator=g)),   # ties at 0
              torch.tensor([0.0, -0.0, 1.0, -2.0, float("inf"), -float("inf"), 1e-40, -1e-40, 1.0])]
    for a in values:
        assert torch.equal(ranks(a), a.flatten().argsort(stable=True).argsort()), "ties broken by position"
    a, b = values[0], values[0].flip(0) + 0.5 * torch.randn(4, 9, 9, generator=g)
    ra, rb = (v.flatten().argsort(stable=True).argsort().double() for v in (a, b))
    assert spearman(a, b) == pytest.approx(float(torch.corrcoef(torch.stack([ra, rb]))[0, 1]), abs=1e-12)
    assert spearman(a, a) == 1.0 and spearman(a, -a) == pytest.approx(-1.0)


def test_sanity_checks_tell_a_model_dependent_method_from_a_fixed_pattern():
    from explainers import explain
    from explainers.metrics import METRICS, sanity_checks

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 3)).eval()
    x = torch.randn(1, 3, 4, 16, 16)
    state = torch.random.get_rng_state()
    values = {m: sanity_checks(model, x, m, explain(model, x, m, target=1).saliency, 1) for m in ("centre", "gradient")}
    assert torch.equal(state, torch.random.get_rng_state()), "the caller's random state is left alone"
    assert values["centre"] == {"sanity_model": pytest.approx(1.0), "sanity_reversed": pytest.approx(1.0)}
    assert values["gradient"]["sanity_model"] < 0.5 and values["gradient"]["sanity_reversed"] < 0.9
    assert not METRICS["sanity_model"].higher_is_better and "method" in METRICS["sanity_reversed"].needs


def test_a_small_models_reinitialised_copy_is_kept_per_seed_and_gives_the_same_values(monkeypatch):
    import copy

    from explainers import explain
    from explainers import metrics as M

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                          nn.Linear(8, 3)).eval()
    x = torch.randn(1, 3, 4, 16, 16)
    saliency = explain(model, x, "gradient", target=1).saliency
    fresh = M.sanity_checks(copy.deepcopy(model), x, "gradient", saliency, 1, seed=2)
    assert M.sanity_checks(model, x, "gradient", saliency, 1, seed=2) == fresh
    kept = M._reinitialised(model, 2)
    assert M._reinitialised(model, 2) is kept and M.sanity_checks(model, x, "gradient", saliency, 1, seed=2) == fresh
    assert M._reinitialised(model, 3) is not kept and M._reinitialised(model, 3) is M._reinitialised(model, 3)
    monkeypatch.setattr(M, "KEEP_COPY_BYTES", 0)                   # a large model: a new copy each time
    other = copy.deepcopy(model)
    assert M._reinitialised(other, 2) is not M._reinitialised(other, 2)


def test_max_sensitivity_equals_captum_with_the_same_noise_and_knows_its_zeros():
    """Against Captum's ``sensitivity_max`` fed the same noise draws, on a small non-linear model with the gradient
    map; 0 for maps that do not depend on the clip: ``centre``, and the gradient of a linear model."""
    captum = pytest.importorskip("captum.metrics")
    from explainers import explain
    from explainers.metrics import METRICS, max_sensitivity

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool3d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    x = torch.randn(1, 3, 4, 16, 16)
    saliency = explain(model, x, "gradient", target=2).saliency
    ours = max_sensitivity(model, x, "gradient", saliency, 2, samples=5, radius=0.5, seed=4)
    gen = torch.Generator().manual_seed(4)

    def noise(inputs, perturb_radius):          # Captum passes the clip alone or in a tuple
        clip = inputs[0] if isinstance(inputs, tuple) else inputs
        return clip + (torch.rand(clip.shape, generator=gen) * 2 - 1) * perturb_radius

    def gradient(inputs):                        # a tuple back, as Captum expects for tuple inputs
        clip = inputs[0] if isinstance(inputs, tuple) else inputs
        return (explain(model, clip, "gradient", target=2).saliency[None],)

    reference = captum.sensitivity_max(gradient, x,
                                       perturb_func=noise, perturb_radius=0.5, n_perturb_samples=5,
                                       max_examples_per_batch=1)
    assert ours > 0.01 and ours == pytest.approx(float(reference), rel=1e-5)
    assert max_sensitivity(model, x, "centre", explain(model, x, "centre").saliency, 2, samples=3) == 0.0
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 16 * 16, 3)).eval()
    flat = explain(linear, x, "gradient", target=0).saliency
    assert max_sensitivity(linear, x, "gradient", flat, 0, samples=3, radius=1.0) == pytest.approx(0.0, abs=1e-6)
    assert not METRICS["max_sensitivity"].higher_is_better and "method" in METRICS["max_sensitivity"].needs


def test_perturbed_clip_endpoints(clip_and_oracle):
    from explainers.metrics import blurred, perturbed_clip

    x, oracle = clip_and_oracle
    assert torch.equal(perturbed_clip(x, oracle, 0.0, "deletion"), x)
    assert torch.equal(perturbed_clip(x, oracle, 1.0, "deletion"), torch.zeros_like(x))
    assert torch.allclose(perturbed_clip(x, oracle, 0.0, "insertion"), blurred(x))
    assert torch.equal(perturbed_clip(x, oracle, 1.0, "insertion"), x)
    half = perturbed_clip(x, oracle, oracle.mean().item(), "deletion")  # exactly the cuboid removed
    assert half[(slice(None), slice(None), *CountingCuboid.box)].abs().sum() == 0
