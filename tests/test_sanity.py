"""Model-randomisation sanity check: rank correlation, the cascade, and the verdict on toy methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sepvit_viz import create_model
from sepvit_viz.explain.sanity import PASS_BELOW, cascade_levels, cascading_randomisation, rank_data, spearman


def test_rank_data_averages_ties():
    np.testing.assert_allclose(rank_data(np.array([10.0, 20.0, 10.0, 5.0])), [2.5, 4.0, 2.5, 1.0])
    np.testing.assert_allclose(rank_data(np.array([[3.0, 1.0], [2.0, 0.0]])), [4, 2, 3, 1])


def test_spearman_by_hand():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, a**3) == pytest.approx(1.0)  # monotone: rank correlation 1
    assert spearman(a, -a) == pytest.approx(-1.0)
    # ranks (1, 2, 3, 4) vs (2, 1, 4, 3): 1 - 6 * sum d^2 / (n (n^2 - 1)) = 1 - 6 * 4 / 60 = 0.6
    assert spearman(a, np.array([2.0, 1.0, 4.0, 3.0])) == pytest.approx(0.6)
    assert spearman(a, np.zeros(4)) == 0.0  # a constant map has no order
    with pytest.raises(ValueError):
        spearman(a, np.zeros(3))


class Linear2d(nn.Module):
    """logits = W x over the flattened image, then a second linear layer: two levels to randomise."""

    def __init__(self, hw: int = 12, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Linear(3 * hw * hw, 16)
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(1)))


def saliency(model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """|d logit / d x| summed over channels: for this linear model it is a picture of its weights."""
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_()
        (g,) = torch.autograd.grad(model(xg)[0, target], xg)
    return g[0].abs().sum(0).numpy()


def edge_map(_model: nn.Module, x: torch.Tensor, _target: int) -> np.ndarray:
    """The photo's gradient magnitude, whatever the model: an explanation of the photo, not the model."""
    gy, gx = torch.gradient(x[0].sum(0))
    return (gx**2 + gy**2).sqrt().numpy()


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.zeros(1, 3, 12, 12)
    x[..., 3:9, 4:10] = 1.0  # a square: strong edges
    return x + 0.05 * torch.randn_like(x)


def test_edge_map_fails_and_a_model_dependent_map_passes(photo):
    torch.manual_seed(1)
    model = Linear2d().eval()
    edges = cascading_randomisation(model, photo, 0, edge_map)
    assert edges.levels == ["head", "body"]
    assert edges.rho == pytest.approx([1.0, 1.0]) and not edges.passes  # flagged: ignores the model
    sal = cascading_randomisation(model, photo, 0, saliency)
    assert abs(sal.final_rho) < PASS_BELOW and sal.passes


def test_a_signed_map_whose_magnitude_follows_the_photo_fails(photo):
    """Gradient-times-input methods on a random model keep the photo's magnitudes with arbitrary signs:
    compared signed, such a map would look unrelated to the trained one and pass."""
    torch.manual_seed(1)
    model = Linear2d().eval()

    def signed_edges(m: nn.Module, x: torch.Tensor, t: int) -> np.ndarray:
        seed = int(abs(m.head.weight.sum().item()) * 1e6) % 2**32  # the signs follow the weights
        return edge_map(m, x, t) * np.random.default_rng(seed).choice([-1.0, 1.0], size=x.shape[-2:])

    r = cascading_randomisation(model, photo, 0, signed_edges)
    assert r.rho == pytest.approx([1.0, 1.0]) and not r.passes
    assert (r.maps[-1] < 0).any()  # the maps are kept signed, as the method gives them


def test_cascade_randomises_top_down_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = create_model("sepvit_test", num_classes=5).eval()
    with torch.no_grad():  # stand-in for training: every parameter away from its init (a fresh
        for p in model.parameters():  # LayerNorm is re-initialised to the values it has)
            p.add_(torch.randn_like(p) * 0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, _ in cascade_levels(model)]
    assert names == ["head"] + [f"stage {i}" for i in range(len(model.stages), 0, -1)]
    seen = []

    def probe(m: nn.Module, x: torch.Tensor, t: int) -> np.ndarray:
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        return np.zeros((4, 4))

    cascading_randomisation(model, torch.zeros(1, 3, 32, 32), 0, probe, original=np.ones((4, 4)))
    for k, v in model.state_dict().items():  # the trained model is untouched
        torch.testing.assert_close(v, before[k])
    # level k changes the head and stages n .. n-k+1 and nothing below them
    n = len(model.stages)
    for k, state in enumerate(seen):
        changed = {
            key.split(".")[0] + ("." + key.split(".")[1] if key.startswith("stages") else "")
            for key in state
            if not torch.equal(state[key], before[key])
        }
        expected = {"head", "norm"} | {f"stages.{i}" for i in range(n - k, n)}
        assert changed == expected, (k, changed)


def test_full_only_scores_one_level(photo):
    model = Linear2d().eval()
    r = cascading_randomisation(model, photo, 0, saliency, full_only=True)
    assert r.levels == ["body"] and len(r.rho) == 1
    with pytest.raises(ValueError):
        cascading_randomisation(Linear2d().train(), photo, 0, saliency)


def test_the_fully_randomised_model_keeps_no_trained_parameter():
    """Parameters the model's init does not draw (SepViT's window tokens) used to get noise added to
    their trained values: the 'random' model kept them (correlation about 0.96 on the shipped weights)."""
    from sepvit_viz.explain.sanity import fully_randomised

    torch.manual_seed(1)
    model = create_model("sepvit_test").eval()
    with torch.no_grad():  # stand-in for training: every parameter away from its init
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    rand = fully_randomised(model, seed=0)
    named = dict(rand.named_parameters())
    tokens = [n for n in named if "window_tokens" in n]
    assert tokens
    for name, trained in model.named_parameters():
        a, b = trained.detach().flatten(), named[name].detach().flatten()
        assert not torch.equal(a, b), name
        if a.numel() > 8 and b.std() > 0:
            corr = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
            assert abs(corr) < 0.3, (name, corr)


def test_randomising_an_untrained_model_draws_its_init_again():
    """What the init writes is told by the parameter's version, not its value: a LayerNorm gain at
    exactly 1 (a fresh model) was taken for a parameter no init touched and replaced by N(0, 0.02)
    noise, collapsing the 'random' model's logits."""
    from sepvit_viz.explain.sanity import fully_randomised

    torch.manual_seed(0)
    model = create_model("sepvit_test").eval()
    rand = fully_randomised(model, seed=0)
    norms = [m for m in rand.modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in norms)
    tokens = [p for n, p in rand.named_parameters() if "window_tokens" in n]
    assert tokens and all(p.std() > 0.005 for p in tokens)  # never drawn by the init: drawn afresh
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert rand(x).std() > 0.5 * model(x).std()
