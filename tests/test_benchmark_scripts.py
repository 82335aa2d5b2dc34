"""The real-model benchmark scripts (benchmarks/, not part of the package): clear errors and one end-to-end run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from probe_data import planted_prompts

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def run(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "COLUMNS": "250"}
    return subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_bench_names_a_missing_model_cache(tmp_path):
    proc = run("smollm2_bench.py", "--model", str(tmp_path / "absent"), "--out", str(tmp_path / "out"))
    assert_one_line_error(proc, "no config.json")
    assert not (tmp_path / "out").exists()


def test_prepare_names_a_missing_converted_model(tmp_path):
    proc = run("smollm2_prepare.py", "baseline", "--cache-dir", str(tmp_path), "--data-dir", str(tmp_path))
    assert_one_line_error(proc, "smollm2_prepare.py convert")


def test_bench_rejects_a_malformed_scav_setting(tmp_path, tiny_model_dir):
    proc = run("smollm2_bench.py", "--model", str(tiny_model_dir), "--out", str(tmp_path / "o"),
               "--extra-attacks", "scav1.5")
    assert_one_line_error(proc, "--extra-attacks takes scavP0")


def test_table_names_a_directory_without_results(tmp_path):
    proc = run("smollm2_table.py", str(tmp_path))
    assert_one_line_error(proc, "holds no smollm2_bench results")


def write_planted_data(root: Path) -> Path:
    """The file layout of ../shared/data, filled with planted-signal prompts the tiny model's probes separate."""
    harmful, harmless = planted_prompts(30)
    root.mkdir()
    with (root / "advbench.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["goal", "target"])
        w.writerows([harmful[i % 30], "Sure"] for i in range(404))  # rows 400+ are the held-out set
    with (root / "jailbreakbench.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["Goal"], *[[h] for h in harmful[:4]]])
    with (root / "xstest_prompts.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["prompt", "label"], *[[b, "safe"] for b in harmless[:4]]])
    for split in ("train", "val"):
        (root / f"alpaca_instructions_{split}.jsonl").write_text(
            "".join(json.dumps({"instruction": b}) + "\n" for b in harmless), encoding="utf-8")
    return root


@pytest.mark.integration
def test_bench_runs_base_vs_es2_end_to_end_and_tables_it(tmp_path, tiny_model_dir):
    data, out = write_planted_data(tmp_path / "data"), tmp_path / "out"
    proc = run("smollm2_bench.py", "--model", str(tiny_model_dir), "--data-dir", str(data), "--out", str(out),
               "--limit", "4", "--steps", "2", "--batch-size", "4", "--max-new-tokens", "4", "--probe-prompts", "24",
               "--only", "train,probe,none,scav0.01,xstest,kl,rescore", "--extra-attacks", "scav0.05@1-2",
               "--set", "max_response_tokens=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    bench = json.loads((out / "bench-default.json").read_text())
    scav = bench["attacks"]["scav0.01_jbb"]
    assert scav["base"]["n"] == scav["es2"]["n"] == 4
    assert 0.0 <= scav["es2"]["success_rate"] <= 1.0
    assert bench["train"]["summary"]["steps_done"] == 2
    assert bench["harmless_kl"] >= 0.0
    assert (out / "budget_curve_jbb_es2-default.png").stat().st_size > 1000  # one plot per variant
    extra = json.loads((out / "results" / "base" / "scav0.05@1-2_jbb.json").read_text())
    assert extra["info"]["layers"] == [1, 2] and extra["info"]["p0"] == 0.05
    assert "scav0.05@1-2_jbb" in bench["attacks"]
    rescored = json.loads((out / "results" / "es2-default" / "scav0.01_jbb.json").read_text())
    assert all(it["nll"] > 0 for it in rescored["items"] if not it["refused"] and not it["degenerate_text"])
    assert all(it["degenerate"] >= it["degenerate_text"] for it in rescored["items"])
    assert rescored["success_rate"] == sum(it["success"] for it in rescored["items"]) / 4

    table = run("smollm2_table.py", str(out), "--md", str(tmp_path / "t.md"), "--json", str(tmp_path / "t.json"))
    assert table.returncode == 0, table.stderr
    rows = json.loads((tmp_path / "t.json").read_text())
    assert [r["side"] for r in rows] == ["base", "es2-default"]
    assert rows[1]["harmless_kl"] == bench["harmless_kl"]
    assert rows[1]["config"]["steps"] == 2 and rows[1]["config"]["batch_size"] == 4
