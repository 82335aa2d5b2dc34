"""ES2's losses in pure torch: two bounded, scale-free separation objectives and the KL regulariser.

Inputs to the separation objectives are one layer's representations already divided by that layer's
base-model hidden-state norm ``n_l`` (:func:`normalise`), so distances are in units of the model's own typical
state size and one ``margin`` value works across layers and models.

All separation losses use the same bounded hinge-squared penalty

    phi_m(d) = max(0, m - d)^2 / m^2          (0 <= phi <= 1; phi = 1 at d = 0, phi = 0 for d >= m)

which pulls with a gradient that shrinks linearly to zero as the distance reaches the margin and then stops:
an unbounded "maximise the distance" diverges (the states blow up and take the logits with them), while a
bounded one that never stops pushing (e.g. ``1 - tanh(d/m)``) fights the KL term forever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Small constant inside square roots so the distance is differentiable at 0.
EPS = 1e-12


def normalise(states: torch.Tensor, norm: float | torch.Tensor) -> torch.Tensor:
    """``states / n_l``: representations in units of the base model's typical hidden-state norm at that layer."""
    return states / norm


def _distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    import torch

    return torch.sqrt(((a - b) ** 2).sum(-1) + EPS)


def hinge_squared(distance: torch.Tensor, margin: float) -> torch.Tensor:
    """``phi_m(d) = max(0, m - d)^2 / m^2``: 1 at d = 0, 0 (with zero gradient) once d >= m."""
    import torch

    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    return torch.relu(margin - distance) ** 2 / margin**2


def _check(harmful: torch.Tensor, harmless: torch.Tensor) -> None:
    if harmful.ndim != 2 or harmless.ndim != 2 or harmful.shape[-1] != harmless.shape[-1]:
        raise ValueError(f"expected [n, d] and [m, d] states, got {tuple(harmful.shape)} and {tuple(harmless.shape)}")
    if harmful.shape[0] == 0 or harmless.shape[0] == 0:
        raise ValueError("both classes need at least one state in the batch (use the paired sampler)")


def centroid_distance(harmful: torch.Tensor, harmless: torch.Tensor) -> torch.Tensor:
    """``||mean(H) - mean(B)||_2`` -- the normalised margin ES2 reports per layer."""
    _check(harmful, harmless)
    return _distance(harmful.float().mean(0), harmless.float().mean(0))


def centroid_margin(harmful: torch.Tensor, harmless: torch.Tensor, margin: float = 4.0) -> torch.Tensor:
    """Centroid margin: ``L = phi_m(||mu_H - mu_B||)`` with ``mu`` the class means of the normalised states.

    Moves the two class means apart until they are ``margin`` base-norms apart, then stops. Bounded in [0, 1].
    Cheap and batch-size robust (means average out noise), but says nothing about individual outliers.
    """
    return hinge_squared(centroid_distance(harmful, harmless), margin)


def sample_margin(harmful: torch.Tensor, harmless: torch.Tensor, margin: float = 4.0) -> torch.Tensor:
    """Per-sample margin: every state must be ``margin`` away from the *other* class's mean.

    ``L = 1/2 [ mean_i phi_m(||h_i - mu_B||) + mean_j phi_m(||b_j - mu_H||) ]`` over harmful states ``h_i`` and
    harmless states ``b_j``. Bounded in [0, 1]. Unlike the centroid margin, a harmful prompt sitting inside the
    harmless cloud keeps a loss even when the means are already far apart -- exactly the prompts an attack needs
    to push least.
    """
    _check(harmful, harmless)
    h, b = harmful.float(), harmless.float()
    mu_h, mu_b = h.mean(0, keepdim=True), b.mean(0, keepdim=True)
    return 0.5 * (hinge_squared(_distance(h, mu_b), margin).mean() + hinge_squared(_distance(b, mu_h), margin).mean())


def weighted_mean(per_position: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``sum(w * m * x) / sum(w * m)`` over positions (``w`` = 1 when no weights are given)."""
    w = mask.to(per_position.dtype)
    if weights is not None:
        w = w * weights.to(per_position.dtype)
    return (per_position * w).sum() / w.sum().clamp_min(1e-8)


def kl_per_position(logits: torch.Tensor, ref_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``T^2 * KL(p_base || p_theta)`` at every position, ``[b, t]`` (no reduction; no gradient to the reference)."""
    import torch.nn.functional as F

    t = float(temperature)
    log_p_ref = F.log_softmax(ref_logits.detach().float() / t, dim=-1)
    log_p = F.log_softmax(logits.float() / t, dim=-1)
    return t * t * (log_p_ref.exp() * (log_p_ref - log_p)).sum(-1)


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0,
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """``T^2 * KL(p_base || p_theta)`` per position, averaged over positions where ``mask`` is 1.

    ``p = softmax(logits / T)`` over the vocabulary; ``logits``/``ref_logits`` are ``[b, t, V]``, ``mask`` and the
    optional ``weights`` ``[b, t]``. With weights the mean is ``sum(w * m * KL) / sum(w * m)``, e.g. weights > 1 on
    the first response positions, where the answer is decided. No gradient reaches ``ref_logits``.
    """
    return weighted_mean(kl_per_position(logits, ref_logits, temperature), mask, weights)


def reference_topk(ref_logits: torch.Tensor, k: int, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cacheable top-``k`` of ``log softmax(ref_logits / T)``: ``(log_probs [.., k], indices [.., k])``."""
    import torch.nn.functional as F

    log_p = F.log_softmax(ref_logits.detach().float() / float(temperature), dim=-1)
    values, indices = log_p.topk(min(k, log_p.shape[-1]), dim=-1)
    return values, indices


def kl_per_position_topk(logits: torch.Tensor, ref_log_probs: torch.Tensor, ref_indices: torch.Tensor,
                         temperature: float = 1.0) -> torch.Tensor:
    """Per-position ``T^2``-scaled KL against cached top-``k`` reference log-probs plus one tail bucket, ``[b, t]``."""
    import torch
    import torch.nn.functional as F

    t = float(temperature)
    log_p = F.log_softmax(logits.float() / t, dim=-1)
    log_q_top = log_p.gather(-1, ref_indices.long())
    ref_top = ref_log_probs.detach().float()
    p_ref_tail = (1.0 - ref_top.exp().sum(-1)).clamp_min(0.0)
    q_tail = (1.0 - log_q_top.exp().sum(-1)).clamp_min(1e-12)
    top = (ref_top.exp() * (ref_top - log_q_top)).sum(-1)
    tail = torch.where(p_ref_tail > 0, p_ref_tail * (torch.log(p_ref_tail.clamp_min(1e-12)) - torch.log(q_tail)),
                       torch.zeros_like(p_ref_tail))
    return t * t * (top + tail)


def kl_to_reference_topk(logits: torch.Tensor, ref_log_probs: torch.Tensor, ref_indices: torch.Tensor,
                         mask: torch.Tensor, temperature: float = 1.0,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """KL against cached top-``k`` reference log-probabilities, the rest of the vocabulary as one tail bucket.

    Both distributions are coarsened to ``k + 1`` outcomes (the k cached tokens and "anything else"), so this is
    a lower bound on the exact KL (data-processing inequality) whose error is at most the tail's share; for a
    peaked chat model k = 32..64 is close (see tests/benchmarks). ``T^2``-scaled and masked like
    :func:`kl_to_reference`.
    """
    return weighted_mean(kl_per_position_topk(logits, ref_log_probs, ref_indices, temperature), mask, weights)


def layer_margins(harmful: dict[int, torch.Tensor], harmless: dict[int, torch.Tensor]) -> dict[int, float]:
    """Normalised centroid distance per layer (for logs and reports; no gradient)."""
    import torch

    with torch.no_grad():
        return {layer: float(centroid_distance(harmful[layer], harmless[layer])) for layer in harmful}
