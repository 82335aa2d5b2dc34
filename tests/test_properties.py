"""Property tests (hypothesis): the separation objectives, the KL, the probes and SCAV's closed form.

States are drawn from seeded torch generators whose shapes, scales and offsets hypothesis chooses, so each
example is cheap and failures shrink to small shapes.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from es2_plugin import objectives as obj
from es2_plugin.attacks.scav import scav_push
from es2_plugin.probe import fit_probes

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEPARATION = [obj.centroid_margin, obj.sample_margin]
TOL32 = 2e-5  # the objectives compute in float32; losses live in [0, 1]

seeds = st.integers(0, 2**31 - 1)
scales = st.floats(1e-3, 1e3)
margins = st.floats(0.05, 20.0)


def _states(seed: int, n: int, m: int, d: int, scale: float, gap: float = 0.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, generator=g, dtype=dtype)
    direction = direction / direction.norm().clamp_min(1e-12)
    h = torch.randn(n, d, generator=g, dtype=dtype) * scale + gap * scale * direction
    b = torch.randn(m, d, generator=g, dtype=dtype) * scale
    return h, b


@pytest.fixture(autouse=True)
def _ieee_denormals():
    """``es2 train`` (run in-process by other tests) turns on flush-to-zero; hypothesis needs IEEE floats."""
    torch.set_flush_denormal(False)
    yield


shapes = st.tuples(st.integers(1, 12), st.integers(1, 12), st.integers(1, 24))


# --------------------------------------------------------------------------- separation objectives
@pytest.mark.parametrize("fn", SEPARATION, ids=lambda f: f.__name__)
@FAST
@given(seed=seeds, shape=shapes, scale=st.floats(1e-6, 1e6), gap=st.floats(0, 50), margin=margins)
def test_objective_is_bounded_and_finite(fn, seed, shape, scale, gap, margin):
    h, b = _states(seed, *shape, scale=scale, gap=gap)
    loss = fn(h, b, margin=margin)
    assert loss.ndim == 0 and math.isfinite(loss.item())
    assert 0.0 <= loss.item() <= 1.0


@pytest.mark.parametrize("fn", SEPARATION, ids=lambda f: f.__name__)
@FAST
@given(seed=seeds, shape=shapes, c=st.floats(1e-3, 1e3), margin=margins)
def test_objective_gradient_is_finite_even_when_classes_coincide(fn, seed, shape, c, margin):
    n, _, d = shape
    h, _ = _states(seed, n, n, d, scale=1.0)
    h = (h * c).requires_grad_(True)
    b = h.detach().clone().requires_grad_(True)  # identical classes: distance 0, where sqrt is not smooth
    fn(h, b, margin=margin).backward()
    assert torch.isfinite(h.grad).all() and torch.isfinite(b.grad).all()


@pytest.mark.parametrize("fn", SEPARATION, ids=lambda f: f.__name__)
@FAST
@given(seed=seeds, shape=shapes, scale=scales, c=st.floats(1e-4, 1e4), gap=st.floats(0, 10), margin=margins)
def test_objective_is_invariant_to_scaling_states_and_norm_jointly(fn, seed, shape, scale, c, gap, margin):
    """ES2 divides by the base model's hidden norm, so a model whose states are c times larger sees the same loss."""
    h, b = _states(seed, *shape, scale=scale, gap=gap)
    norm = float(torch.cat([h, b]).norm(dim=1).mean()) + 1e-300
    a = fn(obj.normalise(h, norm), obj.normalise(b, norm), margin=margin)
    z = fn(obj.normalise(h * c, norm * c), obj.normalise(b * c, norm * c), margin=margin)
    assert z.item() == pytest.approx(a.item(), abs=TOL32)


@pytest.mark.parametrize("fn", SEPARATION, ids=lambda f: f.__name__)
@FAST
@given(seed=seeds, shape=shapes, gap=st.floats(0, 10), margin=margins)
def test_objective_is_symmetric_in_the_classes_and_invariant_to_rigid_motions(fn, seed, shape, gap, margin):
    h, b = _states(seed, *shape, scale=1.0, gap=gap)
    d = h.shape[1]
    g = torch.Generator().manual_seed(seed + 1)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    shift = torch.randn(d, generator=g, dtype=torch.float64) * 5
    base = fn(h, b, margin=margin).item()
    assert fn(b, h, margin=margin).item() == pytest.approx(base, abs=TOL32)  # swap the classes
    assert fn(h @ q + shift, b @ q + shift, margin=margin).item() == pytest.approx(base, abs=TOL32)
    perm_h, perm_b = torch.randperm(h.shape[0], generator=g), torch.randperm(b.shape[0], generator=g)
    assert fn(h[perm_h], b[perm_b], margin=margin).item() == pytest.approx(base, abs=TOL32)


@FAST
@given(d1=st.floats(0, 30), d2=st.floats(0, 30), margin=margins)
def test_hinge_is_one_at_zero_zero_beyond_margin_and_non_increasing(d1, d2, margin):
    lo, hi = sorted((d1, d2))
    phi = obj.hinge_squared(torch.tensor([0.0, lo, hi, margin, margin + 1.0], dtype=torch.float64), margin)
    assert phi[0].item() == pytest.approx(1.0)
    assert phi[1].item() >= phi[2].item() - 1e-12
    assert phi[3].item() == 0.0 and phi[4].item() == 0.0


@FAST
@given(seed=seeds, shape=shapes, margin=margins)
def test_centroid_margin_depends_only_on_the_class_means(seed, shape, margin):
    h, b = _states(seed, *shape, scale=1.0, gap=1.0)
    spread = h - h.mean(0)  # move every harmful state, keep the harmful mean
    g = torch.Generator().manual_seed(seed)
    h2 = h.mean(0) + spread * torch.rand(1, generator=g, dtype=torch.float64) * 3
    assert obj.centroid_margin(h2, b, margin=margin).item() == pytest.approx(
        obj.centroid_margin(h, b, margin=margin).item(), abs=TOL32)


# --------------------------------------------------------------------------- KL regulariser
kl_shapes = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(2, 40))


@FAST
@given(seed=seeds, shape=kl_shapes, t=st.floats(0.1, 10), spread=st.floats(0.01, 30))
def test_kl_is_finite_non_negative_and_zero_against_itself(seed, shape, t, spread):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(*shape, generator=g) * spread
    logits = torch.randn(*shape, generator=g) * spread
    mask = (torch.rand(shape[:2], generator=g) > 0.3).long()
    mask[0, 0] = 1
    kl = obj.kl_to_reference(logits, ref, mask, temperature=t)
    assert math.isfinite(kl.item()) and kl.item() >= -1e-6
    assert abs(obj.kl_to_reference(ref, ref, mask, temperature=t).item()) < 1e-5
    shifted = logits + torch.randn(*shape[:2], 1, generator=g) * 100  # softmax ignores a per-position shift
    assert obj.kl_to_reference(shifted, ref, mask, temperature=t).item() == pytest.approx(kl.item(), rel=1e-3, abs=1e-4)


@FAST
@given(seed=seeds, shape=kl_shapes, k=st.integers(1, 40), t=st.floats(0.5, 4))
def test_topk_kl_is_a_lower_bound_and_exact_with_the_whole_vocabulary(seed, shape, k, t):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(*shape, generator=g, dtype=torch.float64) * 3
    logits = torch.randn(*shape, generator=g, dtype=torch.float64) * 3
    mask = torch.ones(shape[:2])
    exact = obj.kl_to_reference(logits, ref, mask, temperature=t).item()
    values, idx = obj.reference_topk(ref, k, temperature=t)
    approx = obj.kl_to_reference_topk(logits, values, idx, mask, temperature=t).item()
    assert -1e-6 <= approx <= exact + 1e-5
    values, idx = obj.reference_topk(ref, shape[-1], temperature=t)
    assert obj.kl_to_reference_topk(logits, values, idx, mask, temperature=t).item() == pytest.approx(
        exact, rel=1e-4, abs=1e-5)


# --------------------------------------------------------------------------- probes
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=seeds, d=st.integers(2, 12), per_dim=st.integers(6, 10), gap=st.floats(2, 6), scale=st.floats(1e-2, 1e2))
def test_probe_on_separable_data_is_accurate_and_points_the_right_way(seed, d, per_dim, gap, scale):
    """Two clouds strictly separated by a hyperplane (each point >= gap/2 noise units from it), with enough
    points per dimension to generalise: held-out accuracy >= 0.9 at any scale and offset."""
    n = per_dim * d
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(d, generator=g)
    u = u / u.norm()
    offset = torch.randn(d, generator=g) * 3

    def cloud(sign: float) -> torch.Tensor:
        x = torch.randn(n, d, generator=g)
        along = gap / 2 + torch.rand(n, generator=g) * 2
        return (x - (x @ u)[:, None] * u + sign * along[:, None] * u + offset) * scale

    h, b = cloud(+1.0), cloud(-1.0)
    probes = fit_probes({1: h}, {1: b}, test_fraction=0.3, seed=seed % 1000)
    assert probes.accuracy[1] >= 0.9 and probes.train_accuracy[1] >= 0.95
    w = probes.weight(1)
    assert float(w @ u) > 0  # harmful side is where the logit grows
    assert probes.separation[1] > 0 and math.isfinite(probes.margin[1])
    p = probes.prob_harmful(1, torch.cat([h, b]))
    assert ((p > 0.5).float().mean() - 0.5).abs() < 0.2 and bool(((p >= 0) & (p <= 1)).all())


# --------------------------------------------------------------------------- SCAV closed form
@FAST
@given(seed=seeds, n=st.integers(1, 16), d=st.integers(1, 32), p0=st.floats(1e-4, 0.5), b=st.floats(-20, 20),
       scale=st.floats(1e-2, 1e2), wscale=st.floats(1e-3, 1e3))
def test_scav_push_reaches_p0_exactly_along_w_and_leaves_the_rest(seed, n, d, p0, b, scale, wscale):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(n, d, generator=g, dtype=torch.float64) * scale
    w = torch.randn(d, generator=g, dtype=torch.float64) * wscale
    w = torch.where(w.norm() > 0, w, torch.ones_like(w))
    active = torch.rand(n, generator=g) > 0.2
    pushed, eps = scav_push(e, w, b, p0, active)
    target = math.log(p0 / (1 - p0))
    before, after = e @ w + b, pushed @ w + b
    hit = (before > target) & active
    tol = 1e-9 * (1 + before.abs().max().item())
    assert torch.allclose(after[hit], torch.full_like(after[hit], target), rtol=0, atol=tol)  # σ(wᵀe'+b) = P0
    assert torch.equal(pushed[~hit], e[~hit]) and bool((eps[~hit] == 0).all())
    assert bool((eps[hit] < 0).all())  # towards the harmless side
    moved = pushed - e
    assert torch.allclose(moved.norm(dim=1), eps.abs(), rtol=1e-9, atol=1e-12)  # |ε| is the distance moved
    orth = moved - (moved @ w)[:, None] * w / (w @ w)
    assert orth.abs().max().item() <= 1e-9 * (1 + moved.abs().max().item())  # only along w
    assert torch.allclose(torch.sigmoid(after[hit]), torch.full_like(after[hit], p0), rtol=1e-6, atol=1e-12)


@FAST
@given(seed=seeds, n=st.integers(1, 8), d=st.integers(1, 16), p0=st.floats(1e-3, 0.5))
def test_scav_push_is_idempotent_and_float32_close(seed, n, d, p0):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(n, d, generator=g) * 4
    w = torch.randn(d, generator=g)
    once, _ = scav_push(e, w, 0.5, p0)
    twice, eps2 = scav_push(once, w, 0.5, p0)
    assert float(eps2.abs().max()) <= 1e-4 * (1 + float(e.abs().max()))  # already at P0: (almost) no push
    target = math.log(p0 / (1 - p0))
    logits = once @ w + 0.5
    assert float((logits - target).clamp_min(0).max()) <= 1e-3 * (1 + float((e @ w).abs().max()))
    assert torch.allclose(twice, once, atol=1e-3 * (1 + float(e.abs().max())))
