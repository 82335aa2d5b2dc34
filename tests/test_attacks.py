"""The other attacks (none, prefill, RepE, soft prompt), the attack registry and the distance metrics."""

from __future__ import annotations

import pytest
import torch

from es2_plugin.errors import ES2UsageError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(planted):
    from es2_plugin.attacks.base import AttackContext

    model, tok, probes, harmful, _ = planted
    return AttackContext(model, tok, probes, max_new_tokens=6, batch_size=4), harmful


def test_builtin_attacks_are_registered_with_options(fresh_plugins):
    names = set(fresh_plugins.attacks())
    assert {"none", "scav", "prefill", "repe", "softprompt"} <= names
    scav = fresh_plugins.get("attacks", "scav")
    assert scav.options == {"p0": 0.01, "p1": 0.9, "layers": "auto"}
    with pytest.raises(ES2UsageError, match="known options: p0=0.01, p1=0.9, layers='auto'"):
        scav(alpha=1)


def test_plain_generation_matches_transformers_generate(setup):
    from es2_plugin.attacks.base import NoAttack
    from es2_plugin.representations import encode_chat

    ctx, harmful = setup
    out = NoAttack()(ctx, harmful[:1])
    enc = encode_chat(ctx.tokenizer, harmful[:1])
    ref = ctx.model.generate(**enc, max_new_tokens=6, do_sample=False)
    text = ctx.tokenizer.decode(ref[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert out.completions == [text] and out.distance_prompt is None


def test_prefill_completion_starts_with_prefix(setup):
    from es2_plugin.attacks.prefill import Prefill

    ctx, harmful = setup
    out = Prefill(prefix="Sure, here is")(ctx, harmful[:3])
    assert all(c.startswith("Sure, here is") for c in out.completions)
    assert len(out.completions) == 3


def test_repe_with_zero_coef_is_plain_generation_and_pushes_otherwise(setup):
    from es2_plugin.attacks.base import NoAttack
    from es2_plugin.attacks.repe import RepE

    ctx, harmful = setup
    plain = NoAttack()(ctx, harmful[:4]).completions
    zero = RepE(coef=0.0)(ctx, harmful[:4])
    assert zero.completions == plain and zero.distance_prompt == [0.0] * 4
    full = RepE(mode="project", coef=1.0, layers="2")(ctx, harmful[:4])
    unit = ctx.probes.direction(2) / ctx.probes.direction(2).norm()
    from es2_plugin.representations import collect_states

    states = collect_states(ctx.model, ctx.tokenizer, harmful[:4], layers=[2])[2]
    expected = (states @ unit).abs()  # projecting out removes exactly the component along r̂
    assert [d[2] for d in full.distance_layers] == pytest.approx(expected.tolist(), rel=1e-4)


def test_softprompt_lowers_the_target_loss(setup, tiny_model_dir):
    from transformers import AutoConfig, AutoModelForCausalLM

    from es2_plugin.attacks.base import AttackContext
    from es2_plugin.attacks.softprompt import SoftPrompt

    ctx, harmful = setup
    # the 0.02-init tiny model's logits barely depend on the input; a larger init gives a steerable model
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.initializer_range = 0.3
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    out = SoftPrompt(steps=15, n_tokens=4, train_prompts=4)(AttackContext(model, ctx.tokenizer, max_new_tokens=4),
                                                            harmful[:4])
    assert out.info["loss_last"] < out.info["loss_first"] - 1.0
    assert len(out.completions) == 4 and out.distance_prompt is None


def test_empty_prompt_list_is_usage_error(setup):
    from es2_plugin.attacks.base import NoAttack

    ctx, _ = setup
    with pytest.raises(ES2UsageError, match="no prompts"):
        NoAttack()(ctx, [])


def test_budget_curve_counts_success_within_cap():
    from es2_plugin.attacks.metrics import budget_curve, budget_for, distance_summary

    d = [1.0, 2.0, 3.0, 4.0]
    ok = [True, False, True, True]
    assert budget_curve(d, ok) == [(0.0, 0.0), (1.0, 0.25), (2.0, 0.25), (3.0, 0.5), (4.0, 0.75)]
    assert budget_curve(d, ok, caps=[2.5, 10]) == [(2.5, 0.25), (10.0, 0.75)]
    assert budget_for(d, ok, 0.5) == 3.0 and budget_for(d, ok, 1.0) is None
    s = distance_summary([1.0, 3.0], [{1: 0.5, 2: 0.5}, {1: 1.0, 2: 2.0}], [4.0, 8.0])
    assert s == {"mean_distance_prompt": 2.0, "mean_distance_generated": 6.0,
                 "mean_distance_per_layer": {1: 0.75, 2: 1.25}}


def test_plots_write_pngs(tmp_path):
    from es2_plugin import plots

    paths = [
        plots.plot_probe_accuracy({"base": {1: 0.8, 2: 0.95}, "ES2": {1: 0.9, 2: 1.0}}, tmp_path / "a.png"),
        plots.plot_distance_per_layer({"base": {1: 0.3, 2: 0.4}}, tmp_path / "d.png"),
        plots.plot_budget_curve({"base": [(0.0, 0.0), (1.0, 0.5)]}, tmp_path / "b.png"),
        plots.plot_pca({"base": torch.randn(10, 5)}, {"base": torch.randn(10, 5) + 2}, tmp_path / "p.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
