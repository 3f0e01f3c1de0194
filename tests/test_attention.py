"""The attention family on known answers: uniform attention has closed forms, rollout and the gradient-weighted
rules equal dense N×N products of the attention that transformers itself returns, TimeSformer's divided
space-time steps equal their dense matrices, models without attention are refused, and on the trained embedded
transformer every map depends on the weights."""
from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from explainers import REGISTRY, attention, explain
from explainers.attention import capture_attention
from explainers.metrics import sanity_checks
from tests.hubfiles import tiny_classifier
from zoo.models import VideoClassifier, load_model
from zoo.synthetic import make_clip
from zoo.video import preprocess

METHODS = ("attention", "attention_rollout", "grad_rollout", "chefer")


def _wrapped(kind: str, blocks: int = 2) -> tuple[VideoClassifier, torch.Tensor]:
    torch.manual_seed(0)
    model, frames = tiny_classifier(kind, blocks)
    return model, torch.randn(1, 3, frames, 112, 112)


def _uniform_attention(model: VideoClassifier) -> None:
    """Zero queries and keys: every attention row is uniform."""
    for name, p in model.named_parameters():
        if any(k in name for k in ("query", "key", "q_proj", "k_proj", "q_bias")):
            p.data.zero_()
        if name.endswith("qkv.weight") or name.endswith("qkv.bias"):
            p.data[: 2 * p.shape[0] // 3] = 0


@pytest.mark.parametrize("kind", ["videomae", "vivit", "timesformer"])
def test_uniform_attention_gives_the_closed_form_rollout(kind):
    model, x = _wrapped(kind, blocks=1)
    _uniform_attention(model)
    t, h, w = model.token_grid.grid
    n = t * h * w
    # the readout's row of the one block's attention, and rollout's ½ of it with ½ on the CLS token itself
    last_row = {"videomae": 1 / n, "vivit": 1 / (n + 1), "timesformer": 1 / (t * (1 + h * w))}[kind]
    rollout = last_row if kind == "videomae" else last_row / 2          # mean readout: a uniform row stays
    for method, expected in (("attention", last_row), ("attention_rollout", rollout)):
        raw = explain(model, x, method).raw
        assert raw.shape == (t, h, w)
        assert torch.allclose(raw, torch.full_like(raw, expected), rtol=1e-5), method


def _dense_reference(model: VideoClassifier, x: torch.Tensor, target: int) -> dict[str, torch.Tensor]:
    """The definitions as N×N products, over the attentions transformers returns (output_attentions=True)."""
    net = model.net
    net.config._attn_implementation = "eager"
    try:
        with torch.enable_grad():
            out = net(pixel_values=x.transpose(1, 2).requires_grad_(True), output_attentions=True)
            for a in out.attentions:
                a.retain_grad()
            out.logits[0, target].backward()
    finally:
        net.config._attn_implementation = "sdpa"
    probs = [a[0].detach().mean(0) for a in out.attentions]
    weighted = [torch.relu(a.grad[0] * a[0].detach()).mean(0) for a in out.attentions]
    n = probs[0].shape[0]
    eye = torch.eye(n)
    readout = eye[0] if model.token_grid.prefix else torch.full((n,), 1 / n)
    rollout, grad_rollout, chefer = eye, eye, eye
    for a, g in zip(probs, weighted):
        rollout = (0.5 * a + 0.5 * eye) @ rollout
        grad_rollout = ((g + eye) / (g + eye).sum(-1, keepdim=True)) @ grad_rollout
        chefer = chefer + g @ chefer
    rows = {"attention": readout @ probs[-1], "attention_rollout": readout @ rollout,
            "grad_rollout": readout @ grad_rollout, "chefer": readout @ chefer}
    return {k: v[model.token_grid.prefix:].view(model.token_grid.grid) for k, v in rows.items()}


@pytest.mark.parametrize("kind", ["videomae", "vivit"])
def test_every_attention_method_equals_its_dense_definition(kind):
    model, x = _wrapped(kind, blocks=3)
    for p in model.parameters():                  # larger weights: attention far from uniform
        p.data.mul_(3)
    target = int(model(x).argmax())
    reference = _dense_reference(model, x, target)
    for method in METHODS:
        e = explain(model, x, method, target=target)
        assert torch.allclose(e.raw, reference[method], rtol=1e-4, atol=1e-7), method
        assert e.raw.std() > 1e-3 * e.raw.mean(), method              # not a flat map by accident
        assert (e.forward_passes, e.backward_passes) == ((1, 0) if "grad" not in method and method != "chefer"
                                                         else (1, 1))


def _dense_divided(records: list[dict], key: str, grid: tuple[int, int, int]) -> list[torch.Tensor]:
    """TimeSformer's steps as N×N matrices, written out entry by entry from the block's definition."""
    t, h, w = grid
    n = 1 + t * h * w
    token = lambda s, f: 1 + s * t + f                             # noqa: E731  "hwt" order after the CLS
    mats = []
    for r in records:
        a, m = r[key], torch.zeros(n, n)
        if r["kind"] == "time":
            m[0, 0] = 0.0 if key != "probs" else 1.0
            for s in range(h * w):
                for f in range(t):
                    for g in range(t):
                        m[token(s, f), token(s, g)] = a[s, f, g]
        else:
            share = 1 / t if key == "probs" else 1.0
            for f in range(t):
                idx = [0] + [token(s, f) for s in range(h * w)]
                for i, row in enumerate(idx):
                    for j, col in enumerate(idx):
                        m[row, col] += a[f, i, j] * (share if row == 0 else 1.0)
        mats.append(m)
    return mats


def test_divided_space_time_steps_equal_their_dense_matrices():
    model, x = _wrapped("timesformer", blocks=2)
    for p in model.parameters():
        p.data.mul_(3)
    grid = model.token_grid.grid
    with capture_attention(model, gradients=True) as records:
        with torch.enable_grad():
            model(x.requires_grad_(True))[0, 1].backward()
    assert [r["kind"] for r in records] == ["time", "space", "time", "space"]          # forward order
    n = 1 + grid[0] * grid[1] * grid[2]
    eye = torch.eye(n)
    probs, weighted = _dense_divided(records, "probs", grid), _dense_divided(records, "relevance", grid)
    rollout, chefer = eye, eye
    for a, g in zip(probs, weighted):
        rollout = (0.5 * a + 0.5 * eye) @ rollout
        chefer = chefer + g @ chefer
    for method, dense in (("attention_rollout", rollout), ("chefer", chefer), ("attention", probs[-1])):
        e = explain(model, x.detach(), method, target=1)
        assert torch.allclose(e.raw, dense[0, 1:].view(grid[1], grid[2], grid[0]).permute(2, 0, 1), rtol=1e-4,
                              atol=1e-8), method


@pytest.mark.parametrize("method", METHODS)
def test_each_method_leaves_the_model_as_it_was_counts_its_passes_and_repeats(method):
    model, x = _wrapped("videomae")
    model.net.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    maps = [explain(model, x, method) for _ in range(2)]
    assert torch.equal(maps[0].saliency, maps[1].saliency)
    assert (maps[0].forward_passes, maps[0].backward_passes) == REGISTRY[method].count(maps[0].params, (16, 112, 112))
    assert model.net.config._attn_implementation == "sdpa" and model.net.training
    assert not any(m._forward_hooks for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="target class 7 does not exist"):
        explain(model, x, method, target=7)


@pytest.mark.parametrize("method", ["grad_rollout", "chefer", "grad_cam"])
def test_a_gradient_method_leaves_no_tensor_of_its_pass_alive(method):
    """Gradient hooks live in autograd nodes: a hook that refers back to the tensor it is on makes a loop that
    Python's collector cannot see, and every call kept the tensors it captured (3.7 MB per Chefer map of the
    embedded transformer, 0.45 MB per Grad-CAM map of the default model)."""
    model, x = _wrapped("videomae")
    outputs = []

    def keep(_m, _i, out):
        outputs.extend(weakref.ref(o) for o in (out if isinstance(out, tuple) else (out,))
                       if isinstance(o, torch.Tensor))
    handles = [m.register_forward_hook(keep) for m in model.modules() if m is not model]
    try:
        explain(model, x, method)
    finally:
        for handle in handles:
            handle.remove()
    gc.collect()
    assert outputs and not [r for r in outputs if r() is not None]


def test_models_without_attention_or_a_token_grid_are_refused_with_the_reason():
    cnn = nn.Sequential(nn.Conv3d(3, 4, 3), nn.AdaptiveAvgPool3d(1), nn.Flatten())
    transformer, x = _wrapped("videomae")
    bare = transformer.net
    for method in METHODS:
        with pytest.raises(ValueError, match="cannot explain this model: it has no attention layers"):
            explain(cnn, x, method)
        with pytest.raises(ValueError, match="declares no token grid"):
            explain(_plain(bare), x, method)


def test_attention_whose_probabilities_cannot_be_read_is_refused_with_the_reason():
    """torchvision's MViT has attention layers (a fused ``qkv``) and a card with a token grid, but its attention
    returns (tokens, grid shape): the family refuses it instead of failing inside a hook."""
    from torchvision.models.video.mvit import MultiscaleAttention

    class MViTLike(nn.Module):
        def __init__(self, token_grid):
            super().__init__()
            self.token_grid, self.embed, self.head = token_grid, nn.Linear(3, 8), nn.Linear(8, 3)
            self.attn = MultiscaleAttention([2, 4, 4], 8, 8, 2, [1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 1, 1],
                                            residual_pool=True, residual_with_cls_embed=False, rel_pos_embed=False)

        def forward(self, x):
            tokens = self.embed(nn.functional.adaptive_avg_pool3d(x, (2, 4, 4)).flatten(2).transpose(1, 2))
            tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], 1)            # a CLS token, then 2×4×4
            return self.head(self.attn(tokens, (2, 4, 4))[0][:, 0])

    model, x = MViTLike(_wrapped("videomae")[0].token_grid), torch.randn(1, 3, 4, 16, 16)
    assert model(x).shape == (1, 3)
    for method in METHODS:
        with pytest.raises(ValueError, match="attention layers do not give out their probabilities"):
            explain(model, x, method)


def _plain(net: nn.Module) -> nn.Module:
    """A transformers classifier behind a plain module: attention layers, but no card and so no token grid."""
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(pixel_values=x.transpose(1, 2)).logits
    return Plain()



def test_the_probabilities_kernel_stays_until_the_last_method_on_the_model_ends():
    """Two attention methods on one model in two threads overlap: the first to end must not switch the kernel
    back under the second (its later layers would give no probabilities)."""
    block = nn.Module()
    block.config = type("Config", (), {"_attn_implementation": "sdpa"})()
    first, second = (attention._returning_probabilities([block]) for _ in range(2))
    first.__enter__()
    second.__enter__()
    assert block.config._attn_implementation == attention.PROBS
    first.__exit__(None, None, None)
    assert block.config._attn_implementation == attention.PROBS, "the second method still runs"
    second.__exit__(None, None, None)
    assert block.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("mask", [None, "keys", "full"])
def test_the_probabilities_kernel_equals_sdpa_and_overwrites_its_scores_only_where_nothing_differentiates(mask):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 30, 8) for _ in range(3))
    am = None if mask is None else torch.randn(2, 1, 1 if mask == "keys" else 30, 30)
    expected = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=am).transpose(1, 2)
    reference = ((q @ k.transpose(2, 3)) / 8 ** 0.5 + (0 if am is None else am)).softmax(-1)
    with torch.no_grad():
        out, probs = attention._attention_with_probabilities(None, q, k, v, am, 8 ** -0.5)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(probs, reference)
    q.requires_grad_()
    out, probs = attention._attention_with_probabilities(None, q, k, v, am, 8 ** -0.5)
    torch.testing.assert_close(probs, reference)
    assert probs.grad_fn is not None, "the gradient-weighted methods differentiate the probabilities"
    (g,) = torch.autograd.grad(out.sum(), q)
    (g_ref,) = torch.autograd.grad(nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=am).sum(), q)
    torch.testing.assert_close(g, g_ref)


def test_on_the_trained_transformer_every_attention_map_depends_on_its_weights():
    """The embedded transformer: each method runs on it, and its map decorrelates from the map of the same model
    with every layer re-initialised (Adebayo et al.'s sanity check), while a fixed pattern does not."""
    model = load_model("synth-videomae-small")
    x, _ = preprocess(make_clip(1_000_004).video, model.input_spec)
    for method in (*METHODS, "centre"):
        e = explain(model, x, method)
        rho = sanity_checks(model, x, method, e.saliency, e.target)["sanity_model"]
        assert rho == pytest.approx(1.0) if method == "centre" else rho < 0.5, method
