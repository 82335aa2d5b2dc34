"""`es2 train`: outputs, bad input as one line / exit 2, Ctrl-C + --resume equals an uninterrupted run."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from es2_plugin.cli import main
from es2_plugin.config import ES2Config

SMALL = ["--harmful", "es2:authored-harmful:test", "--harmless", "es2:authored-harmless:test", "--steps", "8",
         "--batch-size", "4", "--layers", "1-3", "--save-steps", "4", "--lr", "5e-3", "--max-response-tokens", "6"]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _train(tiny_model_dir, out, *extra):
    return main(["train", "--model", str(tiny_model_dir), "--output", str(out), *SMALL, *extra])


def test_train_writes_adapter_config_and_card(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(tiny_model_dir, out) == 0
    cfg = json.loads((out / "es2_config.json").read_text())
    assert cfg["layers"] == [1, 2, 3] and cfg["config"]["beta"] == 1.0 and cfg["base"]["sha256"]
    assert set(cfg["layer_norms"]) == {"1", "2", "3", "4"} and cfg["es2_plugin_version"]
    assert cfg["steps_done"] == 8 and "es2_kl_harmless" in cfg["final"]
    assert (out / "adapter_model.safetensors").is_file() and (out / "README.md").read_text().startswith("---")
    assert "ES2 separation" in capsys.readouterr().out


@pytest.mark.parametrize("flags, phrase", [
    (["--beta", "-1"], "beta must be"), (["--temperature", "0"], "temperature must be > 0"),
    (["--p1", "1.5"], "p1 must be in (0, 1]"), (["--layers", "9"], "out of range"),
    (["--harmful", "/nonexistent.csv"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tiny_model_dir, tmp_path, capsys, flags, phrase):
    out = tmp_path / "run"
    assert _train(tiny_model_dir, out, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert phrase in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_output_dir_holding_something_else_is_refused(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _train(tiny_model_dir, out) == 2
    assert "holds something else" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_model_without_chat_template_is_one_line(tiny_model_dir, tmp_path, capsys):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare)
    tc = json.loads((bare / "tokenizer_config.json").read_text())
    tc.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(tc))
    for f in bare.glob("chat_template.*"):
        f.unlink()
    assert _train(bare, tmp_path / "run") == 2
    assert "no chat template" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_interrupt_then_resume_equals_uninterrupted(tiny_model_dir, tmp_path):
    from transformers import TrainerCallback

    from es2_plugin.training import run_training

    full, part = tmp_path / "full", tmp_path / "part"
    assert _train(tiny_model_dir, full) == 0

    class CtrlC(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    cfg = ES2Config(steps=8, batch_size=4, layers="1-3", save_steps=4, learning_rate=5e-3, max_response_tokens=6)
    result = run_training(model_path=str(tiny_model_dir), harmful="es2:authored-harmful:test",
                          harmless="es2:authored-harmless:test", output=part, config=cfg, display=False,
                          extra_callbacks=[CtrlC()], resume_command="es2 train --output X --resume")
    assert result["interrupted"] and result["step"] == 4
    assert not (part / "es2_config.json").exists()
    assert main(["train", "--output", str(part), "--resume"]) == 0
    a, b = load_file(full / "adapter_model.safetensors"), load_file(part / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    assert any(a[k].abs().max().item() > 0 for k in a if "lora_B" in k)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_model_dir, tmp_path, capsys, fresh_plugins):
    calls = {"n": 0}

    def nan_after_five(harmful, harmless, margin=4.0):
        calls["n"] += 1
        value = harmful.mean() * 0 + 1.0
        return value * float("nan") if calls["n"] > 5 else value

    fresh_plugins.registry("objectives")
    fresh_plugins._state().registries["objectives"]["nan-test"] = (nan_after_five, "test")
    out = tmp_path / "run"
    assert _train(tiny_model_dir, out, "--objective", "nan-test", "--layers", "1", "--steps", "10") == 2
    err = capsys.readouterr().err
    assert "not finite at step 6" in err and "checkpoint-4" in err
    assert (out / "checkpoints" / "checkpoint-4").is_dir() and not (out / "es2_config.json").exists()


def test_output_loads_in_lm_eval_hf_with_peft(tiny_model_dir, tmp_path):
    """`lm_eval --model hf --model_args pretrained=BASE,peft=DIR` goes through HFLM(pretrained, peft)."""
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    assert _train(tiny_model_dir, out, "--steps", "3") == 0
    lm = HFLM(pretrained=str(tiny_model_dir), peft=str(out), device="cpu", batch_size=1)
    ids = torch.tensor([[5, 6, 7, 8]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        diff = (lm.model(input_ids=ids).logits - base(input_ids=ids).logits).abs().max().item()
    assert diff > 1e-4
