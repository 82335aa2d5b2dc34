"""``es2 demo`` end to end, shortened: tiny model-build budget, few prompts, a few ES2 steps, short answers."""

from __future__ import annotations

import json
import math

import pytest

from es2_plugin.cli import main

QUICK = ["--model-steps", "12", "--steps", "2", "--limit", "8", "--max-new-tokens", "8"]
PLOTS = ("probe_accuracy.png", "projection.png", "distance_per_layer.png")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ES2_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "cache"


def _rate(x) -> bool:
    return isinstance(x, float) and 0.0 <= x <= 1.0


@pytest.mark.integration
def test_demo_end_to_end_then_reuses_cached_model(tmp_path, cache, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), *QUICK]) == 0
    first = capsys.readouterr().out
    assert "Building the built-in model" in first
    assert "Verdict:" in first

    report = json.loads((out / "report.json").read_text())
    assert report["es2_demo"]
    n = report["n"]
    assert (n["held_out_harmful"], n["held_out_harmless"], n["held_out_borderline"]) == (8, 8, 8)
    assert n["attacked"] == round(report["base"]["harmful_refusal"] * 8)  # the held-out harmful the base refuses
    for side in ("base", "es2"):
        s = report[side]
        assert _rate(s["harmful_refusal"]) and _rate(s["harmless_compliance"])
        assert set(s["probe_accuracy"]) == {"1", "2", "3", "4"}  # JSON keys; the toy has 4 layers
        assert all(_rate(v) for v in s["probe_accuracy"].values())
    if report["n"]["attacked"]:
        for side in ("base", "es2"):
            scav = report[side]["scav"]
            assert _rate(scav["success_rate"]) and _rate(scav["keyword_only_success_rate"])
            assert scav["success_rate"] <= scav["keyword_only_success_rate"]  # coherent success is the stricter one
            assert scav["mean_distance_prompt"] >= 0 and scav["mean_distance_generated"] >= scav["mean_distance_prompt"]
    assert math.isfinite(report["harmless_kl"]) and report["harmless_kl"] >= 0
    assert report["es2_config"]["steps"] == 2
    assert isinstance(report["verdict"]["ok"], bool) and report["verdict"]["line"]
    assert set(report["verdict"]["checks"]) == {"base_attack", "es2_attack", "distance", "harmful_refusal",
                                                "harmless_compliance"}
    assert report["times_s"]["total"] > 0 and report["cpu_s"] > 0
    for name in PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "Verdict:" in md and "| SCAV success (not refused, not degenerate) |" in md
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert not (out / "adapter" / "checkpoints").exists()  # no optimizer pickles left in a finished demo

    # a second run reuses the cached model and replaces the previous demo output in place
    assert main(["demo", "--output", str(out), *QUICK]) == 0
    second = capsys.readouterr().out
    assert "Reusing the cached built-in model" in second
    assert "Building the built-in model" not in second
    assert json.loads((out / "report.json").read_text())["model"]["reused"] is True


def test_demo_refuses_a_foreign_output_dir(tmp_path, cache, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["demo", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a previous es2 demo output" in err
    assert (out / "notes.txt").read_text() == "keep me"
    assert not (cache / "toy-model").exists()  # refused before building anything


def test_demo_rejects_bad_numbers(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--steps", "0"])
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err
