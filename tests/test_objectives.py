"""ES2 losses: hand-computed values, boundedness, scale invariance and where gradients flow."""

import math

import pytest
import torch

from es2_plugin import objectives as O
from es2_plugin import plugins


def test_centroid_margin_matches_hand_computation():
    harmful = torch.tensor([[1.0, 0.0], [1.0, 2.0]])  # mean (1, 1)
    harmless = torch.tensor([[0.0, 1.0]])  # mean (0, 1) -> distance 1
    assert O.centroid_margin(harmful, harmless, margin=4.0).item() == pytest.approx((4 - 1) ** 2 / 16, abs=1e-6)


def test_sample_margin_matches_hand_computation():
    harmful = torch.tensor([[3.0, 0.0], [0.0, 4.0]])  # mean (1.5, 2)
    harmless = torch.tensor([[0.0, 0.0]])
    # harmful to harmless mean: 3 and 4 -> phi = 1/16, 0; harmless to harmful mean: 2.5 -> (1.5/4)^2
    expected = 0.5 * ((1 / 16 + 0) / 2 + (1.5 / 4) ** 2)
    assert O.sample_margin(harmful, harmless, margin=4.0).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("fn", [O.centroid_margin, O.sample_margin])
def test_separation_losses_are_bounded(fn):
    torch.manual_seed(0)
    same = torch.randn(1, 8)
    assert fn(same.repeat(3, 1), same.repeat(2, 1)).item() == pytest.approx(1.0, abs=1e-5)
    far = fn(torch.randn(5, 8) + 100.0, torch.randn(4, 8))
    assert far.item() == 0.0
    for _ in range(20):
        value = fn(torch.randn(6, 8) * 10, torch.randn(6, 8) * 10).item()
        assert 0.0 <= value <= 1.0


@pytest.mark.parametrize("fn", [O.centroid_margin, O.sample_margin])
def test_loss_is_invariant_to_jointly_scaling_states_and_norm(fn):
    torch.manual_seed(1)
    h, b, norm = torch.randn(4, 16) * 3, torch.randn(5, 16) * 3, 7.0
    base = fn(O.normalise(h, norm), O.normalise(b, norm))
    for scale in (0.01, 3.0, 1000.0):
        scaled = fn(O.normalise(h * scale, norm * scale), O.normalise(b * scale, norm * scale))
        assert scaled.item() == pytest.approx(base.item(), rel=1e-5)


@pytest.mark.parametrize("fn", [O.centroid_margin, O.sample_margin])
def test_gradient_pushes_classes_apart_and_stops_beyond_margin(fn):
    h = torch.tensor([[1.0, 0.0], [1.0, 0.2]], requires_grad=True)
    b = torch.tensor([[0.0, 0.0], [0.0, 0.2]], requires_grad=True)
    fn(h, b, margin=4.0).backward()
    assert (h.grad[:, 0] < 0).all() and (b.grad[:, 0] > 0).all()  # descent moves h right, b left
    h2 = (h.detach() + torch.tensor([10.0, 0.0])).requires_grad_()
    b2 = b.detach().clone().requires_grad_()
    fn(h2, b2, margin=4.0).backward()
    assert h2.grad.abs().max().item() == 0.0 and b2.grad.abs().max().item() == 0.0


def test_gradient_is_finite_when_classes_coincide():
    h = torch.zeros(2, 3, requires_grad=True)
    b = torch.zeros(2, 3, requires_grad=True)
    O.centroid_margin(h, b).backward()
    assert torch.isfinite(h.grad).all()


def test_kl_matches_hand_computation_and_temperature_scaling():
    ref = torch.tensor([[[0.0, math.log(3.0)]]])  # p_ref = (1/4, 3/4)
    cur = torch.tensor([[[0.0, 0.0]]])  # p = (1/2, 1/2)
    mask = torch.ones(1, 1)
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert O.kl_to_reference(cur, ref, mask).item() == pytest.approx(expected, abs=1e-6)
    t = 2.0  # p_ref at T=2: softmax(0, log3/2) = (1/(1+sqrt3), sqrt3/(1+sqrt3))
    a = 1 / (1 + math.sqrt(3))
    expected_t = t * t * (a * math.log(a / 0.5) + (1 - a) * math.log((1 - a) / 0.5))
    assert O.kl_to_reference(cur, ref, mask, temperature=t).item() == pytest.approx(expected_t, abs=1e-6)


def test_kl_masks_padding_and_weights_positions():
    ref = torch.zeros(1, 3, 4)
    cur = torch.zeros(1, 3, 4)
    cur[0, 1] = torch.tensor([5.0, 0, 0, 0])  # only position 1 differs
    single = O.kl_to_reference(cur[:, 1:2], ref[:, 1:2], torch.ones(1, 1)).item()
    assert single > 0
    assert O.kl_to_reference(cur, ref, torch.tensor([[1.0, 0.0, 1.0]])).item() == pytest.approx(0.0, abs=1e-7)
    assert O.kl_to_reference(cur, ref, torch.ones(1, 3)).item() == pytest.approx(single / 3, rel=1e-5)
    weighted = O.kl_to_reference(cur, ref, torch.ones(1, 3), weights=torch.tensor([[1.0, 8.0, 1.0]]))
    assert weighted.item() == pytest.approx(single * 8 / 10, rel=1e-5)


def test_kl_gradient_reaches_policy_only_and_not_masked_positions():
    ref = torch.randn(1, 3, 5, requires_grad=True)
    cur = torch.randn(1, 3, 5, requires_grad=True)
    O.kl_to_reference(cur, ref, torch.tensor([[1.0, 1.0, 0.0]])).backward()
    assert ref.grad is None
    assert cur.grad[0, 2].abs().max().item() == 0.0 and cur.grad[0, 0].abs().max().item() > 0


def test_topk_kl_is_exact_with_full_vocab_and_a_close_lower_bound_with_small_k():
    torch.manual_seed(0)
    ref = torch.randn(2, 6, 50) * 4
    cur = ref + torch.randn(2, 6, 50) * 0.5
    mask = torch.ones(2, 6)
    exact = O.kl_to_reference(cur, ref, mask).item()
    full = O.kl_to_reference_topk(cur, *O.reference_topk(ref, 50), mask).item()
    assert full == pytest.approx(exact, rel=1e-4)
    approx = O.kl_to_reference_topk(cur, *O.reference_topk(ref, 10), mask).item()
    assert 0.0 <= approx <= exact + 1e-6
    assert approx > 0.5 * exact


def test_objectives_are_registered_by_name():
    assert plugins.get("objectives", "centroid-margin") is O.centroid_margin
    assert plugins.get("objectives", "sample-margin") is O.sample_margin
