"""``es2 probe`` and ``es2 attack`` as a user runs them: real CLI in a subprocess on the tiny model."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from test_plugins import make_outside_plugin
from test_plugins import run_es2 as _run_es2

pytestmark = pytest.mark.integration


def run_es2(*args: str, pythonpath: Path | None = None):
    """One torch thread per subprocess: on a shared 2-core machine more threads only oversubscribe it."""
    return _run_es2(*args, pythonpath=pythonpath, env={"OMP_NUM_THREADS": "1", "ES2_QUIET": "1", "COLUMNS": "200"})


def write_jsonl(path: Path, prompts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from probe_data import planted_prompts

    root = tmp_path_factory.mktemp("cli-data")
    harmful, harmless = planted_prompts(20)
    return write_jsonl(root / "harmful.jsonl", harmful), write_jsonl(root / "harmless.jsonl", harmless)


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """A tiny model of another shape (hidden 48, 3 layers) and a LoRA adapter trained for it."""
    from peft import LoraConfig, get_peft_model
    from tiny_model import build_tiny_chat_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("other")
    path = build_tiny_chat_model(root / "model", hidden=48, n_layers=3)
    model = AutoModelForCausalLM.from_pretrained(path)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(root / "adapter")
    return path, root / "adapter"


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapter") / "es2-adapter"
    peft_model.save_pretrained(out)
    return out


def assert_usage_error(result, needle: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and needle in lines[0], lines[0]


def test_probe_writes_probes_table_and_plots(tiny_model_dir, data, tmp_path):
    harmful, harmless = data
    out = tmp_path / "probe"
    result = run_es2("probe", "--model", str(tiny_model_dir), "--harmful", str(harmful), "--harmless",
                     str(harmless), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "held-out acc" in result.stdout
    info = json.loads((out / "probes.json").read_text())
    assert info["meta"]["hidden_size"] == 32 and info["meta"]["num_layers"] == 4
    assert min(v["accuracy"] for v in info["per_layer"].values()) >= 0.8
    assert {p.name for p in out.iterdir()} == {"probes.json", "probes.safetensors", "probe_accuracy.png", "pca.png"}


def test_compare_base_and_adapter_in_one_table(tiny_model_dir, data, adapter, tmp_path):
    harmful, harmless = data
    out = tmp_path / "attack"
    result = run_es2("attack", "--model", str(tiny_model_dir), "--adapter", str(adapter), "--compare",
                     "--attack", "scav", "--p0", "0.05", "--data", str(harmful), "--probe-harmful", str(harmful),
                     "--harmless", str(harmless), "--limit", "4", "--max-new-tokens", "4", "--output", str(out))
    assert result.returncode == 0, result.stderr
    for column in ("attack", "keyword", "refusal", "degener", "mean |ε|"):
        assert column in result.stdout
    report = json.loads((out / "attack.json").read_text())
    base, es2 = report["runs"]
    assert base["adapter"] is None and es2["adapter"] == str(adapter)
    assert base["label"] in result.stdout and es2["label"] in result.stdout
    for run in (base, es2):
        assert run["summary"]["n"] == 4 and len(run["records"]) == 4
        assert run["summary"]["mean_distance_prompt"] > 0
        assert run["info"]["p0"] == 0.05
        assert 0 <= run["summary"]["success_rate"] <= run["summary"]["keyword_only_success_rate"] + 1e-9
    assert base["records"][0]["distance_prompt"] != es2["records"][0]["distance_prompt"]
    assert {"attack.json", "probe_accuracy.png", "distance_per_layer.png", "budget_curve.png"} <= \
        {p.name for p in out.iterdir()}


def test_outside_plugin_attack_and_judge_by_name(tiny_model_dir, data, tmp_path):
    body = textwrap.dedent('''
        import es2_plugin
        from es2_plugin.attacks.base import Attack, AttackOutput, generate

        class Shout(Attack):
            name = "shout"
            options = {"prefix": "HEY"}

            def __call__(self, ctx, prompts):
                return AttackOutput(list(prompts), generate(ctx, prompts, prefix=self.opts["prefix"]),
                                    info={"attack": "shout"})

        def loud_judge(prompts, completions):
            return [not c.startswith("HEY") for c in completions]

        @es2_plugin.hookimpl
        def es2_register_attacks(register):
            register("shout", Shout)

        @es2_plugin.hookimpl
        def es2_register_judges(register):
            register("loud", loud_judge)
    ''')
    site = make_outside_plugin(tmp_path / "site", name="es2_shout", body=body)
    out = tmp_path / "attack"
    result = run_es2("attack", "--model", str(tiny_model_dir), "--attack", "shout", "--option", "prefix=HEY you",
                     "--judge", "loud", "--data", str(data[0]), "--limit", "3", "--max-new-tokens", "2",
                     "--output", str(out), pythonpath=site)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "attack.json").read_text())
    run = report["runs"][0]
    assert report["attack"] == "shout" and report["judge"] == "loud"
    assert all(r["completion"].startswith("HEY you") for r in run["records"])
    assert run["summary"]["refusal_rate"] == 0.0 and run["summary"]["judge"] == "loud"


@pytest.mark.parametrize(("flags", "needle"), [
    (["--p0", "1.5"], "p0 must be in (0, 1)"),
    (["--p1", "0"], "p1 must be in (0, 1]"),
    (["--judge", "nope"], "registered judges: degeneration, keyword"),
    (["--attack", "nope"], "registered attacks: none, prefill, repe, scav, softprompt"),
    (["--attack", "prefill", "--option", "coef=2"], "known options: prefix="),
    (["--compare"], "--compare needs --adapter"),
])
def test_bad_flags_fail_fast_with_one_line(tiny_model_dir, flags, needle, tmp_path):
    result = run_es2("attack", "--model", str(tiny_model_dir), *flags, "--output", str(tmp_path / "out"))
    assert_usage_error(result, needle)
    assert not (tmp_path / "out").exists()


def test_empty_prompt_file(tiny_model_dir, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = run_es2("attack", "--model", str(tiny_model_dir), "--data", str(empty), "--output", str(tmp_path / "o"))
    assert_usage_error(result, "empty")
    assert not (tmp_path / "o").exists()


def test_adapter_for_another_base_model(tiny_model_dir, other_model, tmp_path):
    result = run_es2("attack", "--model", str(tiny_model_dir), "--adapter", str(other_model[1]), "--attack", "none",
                     "--limit", "1", "--output", str(tmp_path / "o"))
    assert_usage_error(result, "trained for another base model")
    assert not (tmp_path / "o").exists()


def test_probes_for_another_model(tiny_model_dir, other_model, data, tmp_path):
    from es2_plugin.modeling import load_model_and_tokenizer
    from es2_plugin.probe import probe_model

    model, tok = load_model_and_tokenizer(other_model[0])
    from probe_data import planted_prompts

    harmful, harmless = planted_prompts(6)
    probe_model(model, tok, harmful, harmless).save(tmp_path / "probes")
    result = run_es2("attack", "--model", str(tiny_model_dir), "--probes", str(tmp_path / "probes"), "--data",
                     str(data[0]), "--limit", "1", "--output", str(tmp_path / "o"))
    assert_usage_error(result, "probes were fitted for a model with hidden size 48 / 3 layers")
    assert not (tmp_path / "o").exists()
