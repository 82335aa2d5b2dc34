"""Ctrl-C on a real ``es2 train`` process: a checkpoint, the resume command, no half-written file; ``--resume``
in a new process ends with the adapter of an uninterrupted run (max abs difference <= 1e-6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from es2_plugin.cli import main

pytestmark = pytest.mark.integration

STEPS = 16
FLAGS = ["--harmful", "es2:authored-harmful:test", "--harmless", "es2:authored-harmless:test", "--steps", str(STEPS),
         "--batch-size", "4", "--layers", "1-3", "--save-steps", "4", "--lr", "5e-3", "--seed", "3"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ES2_DEBUG"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", ES2_CACHE_DIR=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1", COLUMNS="200", TOKENIZERS_PARALLELISM="false")
    return env


def _half_written(root: Path) -> list[str]:
    """Temporary files/dirs (ours are dot-prefixed ``*.tmp``, HF's ``tmp-checkpoint-*``) left under ``root``."""
    return [str(p.relative_to(root)) for p in root.rglob("*")
            if p.name.endswith(".tmp") or p.name.startswith((".final.", "tmp-checkpoint"))]


def _uninterrupted(tiny_model_dir: Path, out: Path) -> dict[str, torch.Tensor]:
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the same kernels as the OMP_NUM_THREADS=1 subprocesses
    try:
        assert main(["train", "--model", str(tiny_model_dir), "--output", str(out), *FLAGS]) == 0
    finally:
        torch.set_num_threads(old)
    return load_file(out / "adapter_model.safetensors")


def test_sigint_saves_checkpoint_prints_resume_and_resume_matches(tiny_model_dir, tmp_path):
    part = tmp_path / "part"
    cmd = [sys.executable, "-m", "es2_plugin", "train", "--model", str(tiny_model_dir), "--output", str(part), *FLAGS]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    first = part / "checkpoints" / "checkpoint-4"
    deadline = time.monotonic() + 240
    while not (first / "trainer_state.json").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"training ended before the interrupt: {proc.communicate()}"
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    stdout, stderr = proc.communicate(timeout=240)

    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "saving a checkpoint after this step" in stderr
    assert f"Resume with: es2 train --output {part} --resume" in stdout
    assert "checkpoint saved in" in stdout
    ckpts = sorted((part / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    stopped = int(ckpts[-1].name.split("-")[1])
    assert 4 <= stopped < STEPS, ckpts
    state = json.loads((ckpts[-1] / "trainer_state.json").read_text())
    assert state["global_step"] == stopped
    assert (ckpts[-1] / "adapter_model.safetensors").is_file()
    assert not (part / "es2_config.json").exists() and not (part / "adapter_model.safetensors").exists()
    assert json.loads((part / "es2_run.json").read_text())["config"]["steps"] == STEPS
    assert _half_written(part) == []

    resumed = subprocess.run([sys.executable, "-m", "es2_plugin", "train", "--output", str(part), "--resume"],
                             capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((part / "es2_config.json").read_text())
    assert summary["steps_done"] == STEPS
    assert _half_written(part) == []

    a = _uninterrupted(tiny_model_dir, tmp_path / "full")
    b = load_file(part / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff <= 1e-6, diff
    assert any(a[k].abs().max().item() > 0 for k in a if "lora_B" in k)  # it did train


def test_second_ctrl_c_aborts_and_leaves_only_complete_checkpoints(tiny_model_dir, tmp_path):
    """Two Ctrl-C: stop now, even mid-save. Exit 130, and every checkpoint left is complete (resumable)."""
    from es2_plugin.training import _last_checkpoint

    part = tmp_path / "part"
    cmd = [sys.executable, "-m", "es2_plugin", "train", "--model", str(tiny_model_dir), "--output", str(part),
           "--harmful", "es2:authored-harmful:test", "--harmless", "es2:authored-harmless:test", "--steps", "400",
           "--batch-size", "4", "--layers", "1", "--save-steps", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    deadline = time.monotonic() + 240
    while not (part / "checkpoints" / "checkpoint-2").is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "es2 train: interrupted"
    assert not (part / "es2_config.json").exists()
    ckpts = list((part / "checkpoints").glob("checkpoint-*"))
    assert ckpts and _last_checkpoint(part) is not None
    for ckpt in ckpts:  # checkpoint-N is written in place; a cut-short one must have been removed
        json.loads((ckpt / "trainer_state.json").read_text())
        load_file(ckpt / "adapter_model.safetensors")
    assert _half_written(part) == []


def test_resume_skips_a_checkpoint_cut_short(tmp_path):
    """A hard kill (no Python handler runs) can leave checkpoint-N without trainer_state.json: resume uses N-1."""
    from es2_plugin.training import _last_checkpoint

    for step, complete in ((2, True), (4, True), (6, False)):
        d = tmp_path / "checkpoints" / f"checkpoint-{step}"
        d.mkdir(parents=True)
        if complete:
            (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoints" / "checkpoint-8").mkdir()
    (tmp_path / "checkpoints" / "checkpoint-8" / "trainer_state.json").write_text('{"global_st')  # torn write
    assert _last_checkpoint(tmp_path).name == "checkpoint-4"
