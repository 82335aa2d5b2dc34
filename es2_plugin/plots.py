"""PNG plots for probes and attacks (matplotlib, Agg backend, imported only when a plot is drawn).

Every function takes plain numbers (dicts/lists, as found in the JSON reports), writes one PNG atomically
and returns its path, so the demo and reports can reuse them without a model.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    from es2_plugin.io_utils import atomic_write_bytes

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    _pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_probe_accuracy(series: Mapping[str, Mapping[int, float]], path: str | os.PathLike[str], *,
                        p1: float | None = 0.9, title: str = "Held-out probe accuracy per layer") -> Path:
    """One line per model (e.g. ``{"base": {layer: acc}, "ES2": {...}}``) — before/after on one axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for label, acc in series.items():
        layers = sorted(int(k) for k in acc)
        ax.plot(layers, [acc[k] if k in acc else acc[str(k)] for k in layers], marker="o", label=label)  # type: ignore[index]
    if p1 is not None:
        ax.axhline(p1, color="grey", linestyle="--", linewidth=1, label=f"P1 = {p1}")
    ax.set(xlabel="layer (hidden_states index)", ylabel="accuracy", ylim=(0.4, 1.02), title=title)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.legend()
    return _save(fig, path)


def plot_distance_per_layer(series: Mapping[str, Mapping[int, float]], path: str | os.PathLike[str], *,
                            title: str = "Mean push |ε| per layer at the prompt token") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    labels = list(series)
    layers = sorted({int(k) for s in series.values() for k in s})
    width = 0.8 / max(len(labels), 1)
    for i, label in enumerate(labels):
        values = {int(k): v for k, v in series[label].items()}
        ax.bar([layer + (i - (len(labels) - 1) / 2) * width for layer in layers],
               [values.get(layer, 0.0) or 0.0 for layer in layers], width=width, label=label)
    ax.set(xlabel="layer (hidden_states index)", ylabel="mean |ε|", title=title)
    ax.set_xticks(layers)
    ax.legend()
    return _save(fig, path)


def plot_budget_curve(series: Mapping[str, Sequence[tuple[float, float]]], path: str | os.PathLike[str], *,
                      title: str = "Attack success under a cap on the total push") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    x_max = max((c[-1][0] for c in series.values() if c), default=0.0)
    for label, curve in series.items():
        if curve:
            xs, ys = zip(*[*curve, (x_max, curve[-1][1])], strict=True)  # flat to the right edge
            ax.step(xs, ys, where="post", label=label)
    ax.set(xlabel="cap on summed |ε| at the prompt token", ylabel="success rate", ylim=(-0.02, 1.02), title=title)
    ax.legend()
    return _save(fig, path)


def plot_pca(harmful: Mapping[str, Any], harmless: Mapping[str, Any], path: str | os.PathLike[str], *,
             title: str = "Last-token states, 2-D PCA") -> Path:
    """One panel per label (e.g. before/after); each panel projects its own harmful+harmless states ``[n, d]``."""
    import numpy as np

    plt = _pyplot()
    labels = list(harmful)
    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.8), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        h = np.asarray(harmful[label], dtype=np.float64)
        b = np.asarray(harmless[label], dtype=np.float64)
        x = np.concatenate([h, b])
        x = x - x.mean(0)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        z = x @ vt[:2].T
        ax.scatter(z[: len(h), 0], z[: len(h), 1], s=10, c="tab:red", label="harmful")
        ax.scatter(z[len(h):, 0], z[len(h):, 1], s=10, c="tab:blue", label="harmless")
        ax.set(title=f"{title}: {label}", xticks=[], yticks=[])
        ax.legend()
    return _save(fig, path)
