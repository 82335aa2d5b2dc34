"""Per-layer probes: agreement with scikit-learn, raw-space weights, save/load, compatibility, planted signal."""

from __future__ import annotations

import json

import pytest
import torch

from es2_plugin.errors import ES2UsageError
from es2_plugin.probe import ProbeSet, fit_probes, probe_model

torch.set_num_threads(1)


def gaussian_classes(n: int = 60, d: int = 8, shift: float = 1.2, seed: int = 0, layers=(1, 2, 3)):
    g = torch.Generator().manual_seed(seed)
    harmful, harmless = {}, {}
    for i, layer in enumerate(layers):
        scale = 10.0 ** i  # different scales per layer: standardisation must handle them
        direction = torch.zeros(d)
        direction[i % d] = shift
        harmful[layer] = (torch.randn(n, d, generator=g) + direction) * scale + 3.0
        harmless[layer] = (torch.randn(n, d, generator=g) - direction) * scale + 3.0
    return harmful, harmless


def test_accuracy_and_predictions_agree_with_sklearn():
    from sklearn.linear_model import LogisticRegression

    from es2_plugin.probe import _stratified_split

    harmful, harmless = gaussian_classes()
    l2 = 1e-2
    probes = fit_probes(harmful, harmless, test_fraction=0.3, seed=1, l2=l2)
    train, test = _stratified_split(60, 60, 0.3, 1)
    y = torch.cat([torch.ones(60), torch.zeros(60)]).numpy()
    for layer in probes.layers:
        x = torch.cat([harmful[layer], harmless[layer]]).double()
        mu, sd = x[train].mean(0), x[train].std(0)
        z = ((x - mu) / sd).numpy()
        clf = LogisticRegression(C=1.0 / (l2 * int(train.sum())), tol=1e-8, max_iter=5000)
        clf.fit(z[train.numpy()], y[train.numpy()])
        sk_acc = clf.score(z[test.numpy()], y[test.numpy()])
        assert probes.accuracy[layer] == pytest.approx(sk_acc, abs=1e-9)
        ours = probes.prob_harmful(layer, x.float()).numpy()
        theirs = clf.predict_proba(z)[:, 1]
        assert abs(ours - theirs).max() < 1e-3


def test_weights_live_in_raw_hidden_state_space():
    harmful, harmless = gaussian_classes()
    probes = fit_probes(harmful, harmless)
    for layer in probes.layers:
        states = torch.cat([harmful[layer], harmless[layer]])
        manual = torch.sigmoid(states @ probes.weight(layer) + probes.bias(layer))
        assert torch.allclose(manual, probes.prob_harmful(layer, states))
        assert probes.accuracy[layer] > 0.75
        assert probes.norm[layer] == pytest.approx(float(states.norm(dim=1).mean()), rel=1e-5)
        sep = (harmful[layer].mean(0) - harmless[layer].mean(0)).norm() / states.norm(dim=1).mean()
        assert probes.separation[layer] == pytest.approx(float(sep), rel=1e-5)


def test_split_is_stratified_and_seeded():
    from es2_plugin.probe import _stratified_split

    train, test = _stratified_split(20, 10, 0.3, 7)
    assert int(test[:20].sum()) == 6 and int(test[20:].sum()) == 3
    assert torch.equal(test, _stratified_split(20, 10, 0.3, 7)[1])
    assert not torch.equal(test, _stratified_split(20, 10, 0.3, 8)[1])


def test_save_load_round_trip(tmp_path):
    harmful, harmless = gaussian_classes()
    probes = fit_probes(harmful, harmless, meta={"hidden_size": 8, "num_layers": 3, "pooling": "last"})
    probes.save(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["probes.json", "probes.safetensors"]
    loaded = ProbeSet.load(tmp_path / "p")
    assert loaded.layers == probes.layers and loaded.accuracy == probes.accuracy
    assert torch.equal(loaded.weights, probes.weights) and torch.equal(loaded.biases, probes.biases)
    info = json.loads((tmp_path / "p" / "probes.json").read_text())
    assert info["meta"]["pooling"] == "last" and "p_value" in info["per_layer"]["1"]


def test_load_missing_dir_is_usage_error(tmp_path):
    with pytest.raises(ES2UsageError, match="holds no probes"):
        ProbeSet.load(tmp_path)


def test_too_few_prompts_is_usage_error():
    with pytest.raises(ES2UsageError, match="at least 2"):
        fit_probes({1: torch.randn(1, 4)}, {1: torch.randn(5, 4)})


def test_planted_signal_on_tiny_model_reaches_high_accuracy(tiny_model_dir):
    from probe_data import planted_prompts

    from es2_plugin.modeling import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    harmful, harmless = planted_prompts(30)
    probes = probe_model(model, tok, harmful, harmless)
    assert probes.layers == [1, 2, 3, 4]
    assert min(probes.accuracy.values()) >= 0.9
    assert max(probes.p_value.values()) < 1e-3
    assert probes.meta["hidden_size"] == 32 and probes.meta["num_layers"] == 4 and probes.meta["vocab_size"] == len(tok)
    probes.check_compatible(model, tok)


def test_probes_for_another_model_are_rejected(tiny_model_dir):
    from es2_plugin.modeling import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    harmful, harmless = gaussian_classes(d=16)
    probes = fit_probes(harmful, harmless, meta={"hidden_size": 16, "num_layers": 3})
    with pytest.raises(ES2UsageError, match="hidden size 16 / 3 layers; this model has hidden size 32 / 4"):
        probes.check_compatible(model, tok)


def test_probe_metric_is_registered(fresh_plugins):
    harmful, harmless = gaussian_classes()
    metric = fresh_plugins.get("probe_metrics", "probe")
    out = metric(harmful, harmless)
    assert set(out["per_layer"]) == {1, 2, 3}
    assert out["max_accuracy"] >= out["mean_accuracy"] > 0.75
    assert out["mean_separation"] > 0


def test_probes_for_another_tokenizer_are_rejected(tiny_model_dir):
    from es2_plugin.modeling import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    harmful, harmless = gaussian_classes(d=32, layers=(1, 2))
    probes = fit_probes(harmful, harmless, meta={"hidden_size": 32, "num_layers": 4, "vocab_size": len(tok) + 7})
    with pytest.raises(ES2UsageError, match=f"tokenizer of {len(tok) + 7} tokens; this tokenizer has {len(tok)}"):
        probes.check_compatible(model, tok)
