"""Per-layer linear probes harmful vs harmless (paper Fig. 2) and the separation statistics around them.

Why in torch: every layer is fitted at once as one batched L2-regularised logistic regression (standardised
features, full-batch L-BFGS), so a 30-layer model probes in about a second on a CPU; a test checks it agrees
with scikit-learn. Weights are stored in the *original* hidden-state space, because SCAV evaluates
σ(wᵀe + b) on raw states during generation.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from es2_plugin.errors import ES2UsageError

if TYPE_CHECKING:
    import torch

PROBES_JSON = "probes.json"
PROBES_WEIGHTS = "probes.safetensors"
FORMAT_VERSION = 1


@dataclass
class ProbeSet:
    """Fitted probes for a set of layers (``layer`` = index into ``hidden_states``, 1..L)."""

    layers: list[int]
    weights: Any  # float32 [n_layers, d], original hidden-state space
    biases: Any  # float32 [n_layers]
    accuracy: dict[int, float]  # held-out accuracy
    train_accuracy: dict[int, float] = field(default_factory=dict)
    centroid_distance: dict[int, float] = field(default_factory=dict)
    norm: dict[int, float] = field(default_factory=dict)  # mean ‖h‖ over both classes
    separation: dict[int, float] = field(default_factory=dict)  # centroid distance / norm
    margin: dict[int, float] = field(default_factory=dict)  # mean signed distance to the hyperplane / norm
    p_value: dict[int, float] = field(default_factory=dict)  # one-sided binomial test of accuracy vs 0.5
    meta: dict[str, Any] = field(default_factory=dict)
    means: Any = None  # float32 [n_layers, 2, d]: class means (harmful, harmless), for refusal directions

    def _row(self, layer: int) -> int:
        try:
            return self.layers.index(int(layer))
        except ValueError:
            raise ES2UsageError(f"no probe for layer {layer}; probed layers: {self.layers}") from None

    def weight(self, layer: int) -> torch.Tensor:
        return self.weights[self._row(layer)]

    def bias(self, layer: int) -> float:
        return float(self.biases[self._row(layer)])

    def logit(self, layer: int, states: torch.Tensor) -> torch.Tensor:
        """wᵀe + b for ``states [..., d]`` (computed in float32)."""
        w = self.weight(layer).to(states.device)
        return states.float() @ w + self.bias(layer)

    def prob_harmful(self, layer: int, states: torch.Tensor) -> torch.Tensor:
        return self.logit(layer, states).sigmoid()

    def direction(self, layer: int) -> torch.Tensor:
        """The refusal direction at ``layer``: harmful mean minus harmless mean (RepE-style)."""
        if self.means is None:
            raise ES2UsageError("these probes carry no class means; refit them with es2 probe")
        row = self.means[self._row(layer)]
        return row[0] - row[1]

    def layers_above(self, p1: float) -> list[int]:
        """Layers whose held-out accuracy reaches ``p1`` (the layers SCAV attacks)."""
        return [layer for layer in self.layers if self.accuracy[layer] >= p1]

    def summary(self) -> dict[str, Any]:
        """JSON-ready per-layer statistics and metadata (no weights)."""
        per_layer = {
            str(layer): {
                "accuracy": self.accuracy[layer],
                "train_accuracy": self.train_accuracy.get(layer),
                "centroid_distance": self.centroid_distance.get(layer),
                "norm": self.norm.get(layer),
                "separation": self.separation.get(layer),
                "margin": self.margin.get(layer),
                "p_value": self.p_value.get(layer),
            }
            for layer in self.layers
        }
        return {"format_version": FORMAT_VERSION, "meta": self.meta, "layers": self.layers, "per_layer": per_layer}

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """``probes.safetensors`` (weights, biases) + ``probes.json`` (statistics, metadata), written atomically."""
        from safetensors.torch import save

        from es2_plugin.io_utils import atomic_dir, atomic_write_bytes, atomic_write_json

        target = Path(directory)
        tensors = {"weights": self.weights.contiguous().float(), "biases": self.biases.contiguous().float()}
        if self.means is not None:
            tensors["means"] = self.means.contiguous().float()
        blob = save(tensors)
        if target.exists():
            atomic_write_bytes(target / PROBES_WEIGHTS, blob)
            atomic_write_json(target / PROBES_JSON, self.summary())
        else:
            with atomic_dir(target) as tmp:
                atomic_write_bytes(tmp / PROBES_WEIGHTS, blob)
                atomic_write_json(tmp / PROBES_JSON, self.summary())
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ProbeSet:
        from safetensors.torch import load_file

        d = Path(directory)
        if not (d / PROBES_JSON).is_file() or not (d / PROBES_WEIGHTS).is_file():
            raise ES2UsageError(f"{d} holds no probes ({PROBES_JSON} + {PROBES_WEIGHTS}); create them with "
                                f"es2 probe --output {d}")
        try:
            info = json.loads((d / PROBES_JSON).read_text())
            tensors = load_file(str(d / PROBES_WEIGHTS))
        except Exception as exc:  # corrupt file: a user problem, not a bug
            raise ES2UsageError(f"cannot read probes in {d}: {exc}; refit with es2 probe") from exc
        layers = [int(x) for x in info["layers"]]
        per = {int(k): v for k, v in info["per_layer"].items()}

        def col(name: str) -> dict[int, float]:
            return {layer: per[layer][name] for layer in layers if per[layer].get(name) is not None}

        return cls(layers=layers, weights=tensors["weights"], biases=tensors["biases"], accuracy=col("accuracy"),
                   train_accuracy=col("train_accuracy"), centroid_distance=col("centroid_distance"),
                   norm=col("norm"), separation=col("separation"), margin=col("margin"),
                   p_value=col("p_value"), meta=info.get("meta", {}), means=tensors.get("means"))

    def check_compatible(self, model: Any, tokenizer: Any = None) -> None:
        """Raise a one-line :class:`ES2UsageError` when these probes were fitted for another model/tokenizer."""
        have = model_meta(model, tokenizer)
        want_h, want_n = self.meta.get("hidden_size"), self.meta.get("num_layers")
        if (want_h is not None and want_h != have["hidden_size"]) or (want_n is not None and want_n != have["num_layers"]):
            raise ES2UsageError(f"probes were fitted for a model with hidden size {want_h} / {want_n} layers; this "
                                f"model has hidden size {have['hidden_size']} / {have['num_layers']} layers; "
                                f"refit with es2 probe")
        if int(self.weights.shape[1]) != have["hidden_size"] or max(self.layers) > have["num_layers"]:
            raise ES2UsageError(f"probes do not fit this model (hidden size {int(self.weights.shape[1])}, layers "
                                f"{self.layers}); refit with es2 probe")
        want_v = self.meta.get("vocab_size")
        if tokenizer is not None and want_v is not None and have.get("vocab_size") not in (None, want_v):
            raise ES2UsageError(f"probes were fitted with a tokenizer of {want_v} tokens; this tokenizer has "
                                f"{have['vocab_size']}; refit with es2 probe")


def model_meta(model: Any, tokenizer: Any = None) -> dict[str, Any]:
    """What a probe file records about the model it was fitted on."""
    from es2_plugin.modeling import base_model
    from es2_plugin.representations import num_layers

    config = getattr(base_model(model), "config", None)
    text = getattr(config, "text_config", None) or config
    meta: dict[str, Any] = {
        "model": str(getattr(config, "_name_or_path", "") or ""),
        "hidden_size": int(getattr(text, "hidden_size", 0) or 0),
        "num_layers": num_layers(model),
    }
    if tokenizer is not None:
        meta["tokenizer"] = str(getattr(tokenizer, "name_or_path", "") or "")
        meta["vocab_size"] = len(tokenizer)
    return meta


def _stratified_split(n_pos: int, n_neg: int, test_fraction: float, seed: int) -> tuple[Any, Any]:
    """Boolean test mask over ``[pos..., neg...]``: the same fraction of each class, seeded."""
    import torch

    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n_pos + n_neg, dtype=torch.bool)
    for offset, n in ((0, n_pos), (n_pos, n_neg)):
        k = int(round(test_fraction * n))
        if test_fraction > 0:
            k = min(max(k, 1), n - 1)
        if k > 0:
            mask[offset + torch.randperm(n, generator=g)[:k]] = True
    return ~mask, mask


def _binomial_p(correct: int, n: int) -> float:
    """P(X ≥ correct) for X ~ Binomial(n, 1/2): how surprising the held-out accuracy is under chance."""
    if n == 0:
        return 1.0
    return min(1.0, sum(math.comb(n, k) for k in range(correct, n + 1)) / 2.0 ** n)


def _fit_batched(x: torch.Tensor, y: torch.Tensor, l2: float, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic regression on every layer at once: x ``[L, n, d]`` standardised, y ``[n]`` in {0, 1}.

    Minimises mean log-loss + l2/2·‖w‖² per layer (the layers share no parameters, so the summed loss
    separates); equals scikit-learn's ``C = 1/(l2·n)``.
    """
    import torch
    import torch.nn.functional as F

    n_layers, _, d = x.shape
    w = torch.zeros(n_layers, d, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_layers, dtype=torch.float64, requires_grad=True)
    target = y.to(torch.float64).expand(n_layers, -1)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = torch.einsum("lnd,ld->ln", x, w) + b[:, None]
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)
        loss = (loss + 0.5 * l2 * (w * w).sum(1)).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def fit_probes(harmful: dict[int, torch.Tensor], harmless: dict[int, torch.Tensor], *, test_fraction: float = 0.3,
               seed: int = 0, l2: float = 1e-2, steps: int = 200, meta: dict[str, Any] | None = None) -> ProbeSet:
    """Fit one probe per layer on ``{layer: [n, d]}`` states; label 1 = harmful.

    Accuracy is measured on a stratified, seeded held-out split (``test_fraction`` of each class; 0 means
    training accuracy). ``norm`` (mean hidden-state norm of both classes) is what training divides by.
    """
    import torch

    if set(harmful) != set(harmless) or not harmful:
        raise ES2UsageError(f"harmful and harmless states must cover the same non-empty layers "
                            f"(got {sorted(harmful)} and {sorted(harmless)})")
    if not 0 <= test_fraction < 1:
        raise ES2UsageError(f"test_fraction must be in [0, 1), got {test_fraction}")
    layers = sorted(int(layer) for layer in harmful)
    n_pos, n_neg = int(harmful[layers[0]].shape[0]), int(harmless[layers[0]].shape[0])
    if min(n_pos, n_neg) < 2:
        raise ES2UsageError(f"probes need at least 2 prompts per class (got {n_pos} harmful, {n_neg} harmless)")
    x = torch.stack([torch.cat([harmful[layer], harmless[layer]]).double() for layer in layers])  # [L, n, d]
    y = torch.cat([torch.ones(n_pos), torch.zeros(n_neg)]).double()
    train, test = _stratified_split(n_pos, n_neg, test_fraction, seed)
    if not bool(test.any()):
        test = train
    mu = x[:, train].mean(1, keepdim=True)
    sd = x[:, train].std(1, keepdim=True).clamp_min(1e-6)
    w_z, b_z = _fit_batched((x[:, train] - mu) / sd, y[train], l2, steps)
    w = w_z / sd.squeeze(1)  # back to the raw hidden-state space
    b = b_z - (w * mu.squeeze(1)).sum(1)

    logits = torch.einsum("lnd,ld->ln", x, w) + b[:, None]
    pred = (logits > 0).double()
    correct_test = (pred[:, test] == y[test]).sum(1)
    acc_test = correct_test.double() / int(test.sum())
    acc_train = (pred[:, train] == y[train]).double().mean(1)
    centroid = (x[:, :n_pos].mean(1) - x[:, n_pos:].mean(1)).norm(dim=1)
    norm = x.norm(dim=2).mean(1)
    sign = y * 2 - 1
    margin = ((logits * sign) / w.norm(dim=1, keepdim=True)).mean(1) / norm

    def per_layer(t: torch.Tensor) -> dict[int, float]:
        return {layer: float(v) for layer, v in zip(layers, t.tolist(), strict=True)}

    n_test = int(test.sum())
    return ProbeSet(
        layers=layers, weights=w.float(), biases=b.float(), accuracy=per_layer(acc_test),
        train_accuracy=per_layer(acc_train), centroid_distance=per_layer(centroid), norm=per_layer(norm),
        separation=per_layer(centroid / norm), margin=per_layer(margin),
        p_value={layer: _binomial_p(int(c), n_test) for layer, c in zip(layers, correct_test.tolist(), strict=True)},
        means=torch.stack([x[:, :n_pos].mean(1), x[:, n_pos:].mean(1)], dim=1).float(),
        meta={**(meta or {}), "n_harmful": n_pos, "n_harmless": n_neg, "test_fraction": test_fraction,
              "seed": seed, "l2": l2},
    )


def probe_model(model: Any, tokenizer: Any, harmful_prompts: Sequence[str], harmless_prompts: Sequence[str],
                layers: Sequence[int] | None = None, *, batch_size: int = 16, pooling: str = "last",
                progress: Any = None, **fit_kwargs: Any) -> ProbeSet:
    """Collect last-token states of both prompt sets and fit probes; metadata records the model and tokenizer."""
    from es2_plugin.representations import collect_states

    if not harmful_prompts or not harmless_prompts:
        raise ES2UsageError("probing needs harmful and harmless prompts; one of the prompt sets is empty")
    n = len(harmful_prompts)

    def shifted(done: int) -> None:
        if progress is not None:
            progress(n + done)

    states_h = collect_states(model, tokenizer, list(harmful_prompts), layers=layers, batch_size=batch_size,
                              pooling=pooling, progress=progress)  # type: ignore[arg-type]
    states_b = collect_states(model, tokenizer, list(harmless_prompts), layers=layers, batch_size=batch_size,
                              pooling=pooling, progress=shifted)  # type: ignore[arg-type]
    meta = {**model_meta(model, tokenizer), "pooling": pooling}
    return fit_probes(states_h, states_b, meta=meta, **fit_kwargs)


def probe_metric(harmful: dict[int, torch.Tensor], harmless: dict[int, torch.Tensor], **options: Any) -> dict[str, Any]:
    """The built-in ``probe`` representation metric: held-out accuracy and normalised separation per layer."""
    probes = fit_probes(harmful, harmless, **options)
    per_layer = {layer: {"accuracy": probes.accuracy[layer], "separation": probes.separation[layer],
                         "margin": probes.margin[layer]} for layer in probes.layers}
    accs = [v["accuracy"] for v in per_layer.values()]
    seps = [v["separation"] for v in per_layer.values()]
    return {"per_layer": per_layer, "max_accuracy": max(accs), "mean_accuracy": sum(accs) / len(accs),
            "mean_separation": sum(seps) / len(seps)}
