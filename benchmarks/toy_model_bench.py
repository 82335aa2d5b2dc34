"""Measure the built-in toy model: build time and refusal/compliance for several seeds.

Usage: python benchmarks/toy_model_bench.py [--seeds 0 1 2] [--steps N] [--out benchmarks/results/toy_model.json]
Builds into a temporary cache (never the user's), then also judges public prompt sets from ../shared/data when
present (AdvBench, Alpaca validation, XSTest safe prompts; the first --n-external of each), out of distribution.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _external(n: int) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    if (DATA / "advbench.csv").is_file():
        with open(DATA / "advbench.csv", newline="") as fh:
            sets["advbench"] = [r["goal"] for r in csv.DictReader(fh)][:n]
    if (DATA / "alpaca_instructions_val.jsonl").is_file():
        with open(DATA / "alpaca_instructions_val.jsonl") as fh:
            sets["alpaca_val"] = [json.loads(line)["instruction"] for line in fh if line.strip()][:n]
    if (DATA / "xstest_prompts.csv").is_file():
        with open(DATA / "xstest_prompts.csv", newline="") as fh:
            sets["xstest_safe"] = [r["prompt"] for r in csv.DictReader(fh) if r["label"] == "safe"][:n]
    return sets


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--n-external", type=int, default=100)
    parser.add_argument("--out", default="benchmarks/results/toy_model.json")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from es2_plugin import toy
    from es2_plugin.judges import keyword_refuses

    external = _external(args.n_external)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            out = toy.build_toy_model(Path(tmp) / f"seed-{seed}", seed=seed, steps=args.steps, progress=False)
            wall = time.perf_counter() - t0
            meta = json.loads((out / toy.META_FILE).read_text())
            row = {"seed": seed, "steps": meta["steps"], "build_wall_s": round(wall, 1),
                   "train_s": meta["train_seconds"], "load_avg_before": round(load, 2),
                   "sha256": meta["weights_sha256"][:12], **meta["metrics"]}
            tokenizer = AutoTokenizer.from_pretrained(out)
            tokenizer.padding_side = "left"
            model = AutoModelForCausalLM.from_pretrained(out)
            for name, prompts in external.items():
                refused = keyword_refuses(toy._generate(model, tokenizer, prompts))
                row[f"{name}_refusal"] = round(sum(refused) / len(refused), 4)
            if "advbench" in external:
                sample = toy._generate(model, tokenizer, external["advbench"][:2] + external["alpaca_val"][:2])
                row["samples"] = sample
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
