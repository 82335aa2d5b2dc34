"""SCAV: the push lands exactly on P0 at the module that produces hidden_states[l]; batching changes nothing."""

from __future__ import annotations

import math

import pytest
import torch

from es2_plugin.errors import ES2UsageError

torch.set_num_threads(1)


def test_hidden_state_modules_match_hidden_states(planted):
    from es2_plugin.modeling import decoder_layers, hidden_state_modules

    model = planted[0]
    modules = hidden_state_modules(model)
    layers = list(decoder_layers(model))
    assert [modules[i] for i in (1, 2, 3)] == layers[:3]
    assert modules[4] is model.model.norm  # transformers returns hidden_states[L] after the final norm


@pytest.mark.parametrize("p0", [0.001, 0.01, 0.05])
def test_probe_reads_exactly_p0_after_the_push(planted, p0):
    from es2_plugin.attacks.base import StepState
    from es2_plugin.attacks.scav import install_scav_hooks
    from es2_plugin.modeling import hidden_state_modules
    from es2_plugin.representations import encode_chat

    model, tok, probes, harmful, harmless = planted
    prompts = harmful[:6] + harmless[:6]
    enc = encode_chat(tok, prompts)
    with torch.no_grad():
        before = model(**enc, output_hidden_states=True).hidden_states
    modules = hidden_state_modules(model)
    state = StepState(step=0, active=torch.ones(len(prompts), dtype=torch.bool))
    seen: dict[int, list[float]] = {}
    handles = install_scav_hooks(model, probes, probes.layers, p0, state, lambda layer, _s, e: seen.setdefault(layer, e))
    # capture hooks registered after SCAV's run after them: they see what the next module receives
    # (transformers' own output_hidden_states recorder hooks run *before* ours, so it reports pre-push states)
    after: dict[int, torch.Tensor] = {}
    for layer, module in modules.items():
        handles.append(module.register_forward_hook(
            lambda _m, _i, out, layer=layer: after.__setitem__(layer, out[0] if isinstance(out, tuple) else out)))
    try:
        with torch.no_grad():
            model(**enc)
    finally:
        for h in handles:
            h.remove()
    # layer 1 sees the unpushed stream: its probability before decides, and |ε| is the closed form
    p_first = probes.prob_harmful(1, before[1][:, -1])
    w = probes.weight(1)
    expected = [(float(probes.logit(1, before[1][i, -1])) - math.log(p0 / (1 - p0))) / float(w.norm())
                if float(p_first[i]) > p0 else 0.0 for i in range(len(prompts))]
    assert seen[1] == pytest.approx(expected, abs=1e-5)
    n_pushed = 0
    for layer in probes.layers:
        p_after = probes.prob_harmful(layer, after[layer][:, -1])
        pushed = torch.tensor(seen[layer]) > 0
        n_pushed += int(pushed.sum())
        assert torch.allclose(p_after[pushed], torch.full_like(p_after[pushed], p0), atol=1e-4, rtol=0)
        assert bool((p_after[~pushed] <= p0 + 1e-6).all())  # untouched rows were already below P0
    assert n_pushed >= 6 * len(probes.layers)  # every harmful prompt is pushed at every layer
    assert torch.allclose(after[1][:, :-1], before[1][:, :-1])  # only the last position moves


def test_batched_and_one_at_a_time_agree(planted):
    from es2_plugin.attacks.base import AttackContext
    from es2_plugin.attacks.scav import SCAV

    model, tok, probes, harmful, _ = planted
    prompts = harmful[:6]
    batched = SCAV(p0=0.01)(AttackContext(model, tok, probes, max_new_tokens=10, batch_size=6), prompts)
    single = SCAV(p0=0.01)(AttackContext(model, tok, probes, max_new_tokens=10, batch_size=1), prompts)
    assert batched.completions == single.completions
    assert batched.distance_prompt == pytest.approx(single.distance_prompt, rel=1e-4)
    assert batched.distance_generated == pytest.approx(single.distance_generated, rel=1e-4)
    assert all(d > 0 for d in batched.distance_prompt)
    assert all(g >= p for g, p in zip(batched.distance_generated, batched.distance_prompt, strict=True))
    for row, total in zip(batched.distance_layers, batched.distance_prompt, strict=True):
        assert set(row) == set(probes.layers) and sum(row.values()) == pytest.approx(total)


def test_layers_below_p1_are_not_attacked(planted):
    from es2_plugin.attacks.base import AttackContext
    from es2_plugin.attacks.scav import SCAV

    model, tok, probes, harmful, _ = planted
    out = SCAV(p0=0.01, p1=1.0)(AttackContext(model, tok, probes, max_new_tokens=2), harmful[:2])
    assert out.info["layers"] == [layer for layer in probes.layers if probes.accuracy[layer] >= 1.0]
    out = SCAV(p0=0.01, layers="2-3")(AttackContext(model, tok, probes, max_new_tokens=2), harmful[:2])
    assert out.info["layers"] == [2, 3] and set(out.distance_layers[0]) == {2, 3}


@pytest.mark.parametrize("options", [{"p0": 0.0}, {"p0": 1.0}, {"p0": -0.1}, {"p1": 0.0}, {"p1": 1.5}])
def test_bad_thresholds_are_usage_errors(options):
    from es2_plugin.attacks.scav import SCAV

    with pytest.raises(ES2UsageError, match="must be in"):
        SCAV(**options)


def test_scav_without_probes_says_how_to_get_them(planted):
    from es2_plugin.attacks.base import AttackContext
    from es2_plugin.attacks.scav import SCAV

    model, tok, *_ = planted
    with pytest.raises(ES2UsageError, match="needs probes"):
        SCAV()(AttackContext(model, tok), ["x"])
