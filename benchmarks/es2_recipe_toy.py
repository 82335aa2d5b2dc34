"""Which KL recipe keeps the built-in toy model's unattacked refusal? (issue 3 calibration, item 8)

Each variant trains ES2 with ``run_training`` (LoRA r=16 all-linear, centroid margin 4, beta 1, all layers,
lr 2e-3, 150 steps of 16 harmful + 16 harmless authored *train* prompts) and is scored on the authored *test*
prompts with the toy's own keyword judge (greedy, 32 new tokens): harmful refusal, harmless and borderline
compliance, plus the normalised margin ratio and harmless KL from ``es2_config.json``.

    python benchmarks/es2_recipe_toy.py [--variants first10,uniform,...] [--steps 150] [--threads 1] [--results STEM]

Results: benchmarks/results/es2_recipe_toy.md (+ .json); finished variants are reused on a re-run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
WORK = Path("/tmp/es2_recipe_toy")

VARIANTS: dict[str, dict] = {
    "uniform": {"kl_on": "both", "kl_span": "prompt+response", "first_response_weight": 1.0},
    "first10": {"kl_on": "both", "kl_span": "prompt+response", "first_response_weight": 10.0},
    "harmless-prompt": {"kl_on": "harmless", "kl_span": "prompt", "first_response_weight": 1.0},
    "both-prompt": {"kl_on": "both", "kl_span": "prompt", "first_response_weight": 1.0},
    "first10-beta4": {"kl_on": "both", "kl_span": "prompt+response", "first_response_weight": 10.0, "beta": 4.0},
    "first30": {"kl_on": "both", "kl_span": "prompt+response", "first_response_weight": 30.0},
    "sample-first10": {"objective": "sample-margin", "first_response_weight": 10.0},
    # stress: a margin twice as far (the hinge stops later, so the push is stronger)
    "uniform-m8": {"first_response_weight": 1.0, "objective_options": {"margin": 8.0}},
    "first10-m8": {"first_response_weight": 10.0, "objective_options": {"margin": 8.0}},
}


def evaluate(base: str, adapter: Path | None) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from es2_plugin.toy import _evaluate

    tok = AutoTokenizer.from_pretrained(base)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(base)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return _evaluate(model.eval(), tok, "test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="uniform,first10,harmless-prompt")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default="es2_recipe_toy", help="results file stem (parallel runs: one each)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from es2_plugin.config import ES2Config
    from es2_plugin.toy import ensure_toy_model
    from es2_plugin.training import run_training

    base = str(ensure_toy_model())
    out_json = RESULTS / f"{args.results}.json"
    results = json.loads(out_json.read_text()) if out_json.is_file() else {}
    if "base" not in results:
        results["base"] = {"eval": evaluate(base, None)}
    for name in args.variants.split(","):
        key = f"{name}@{args.steps}s{args.seed}"
        if key in results:
            continue
        options = {"layers": "all", "steps": args.steps, "batch_size": 16, "learning_rate": 2e-3,
                   "seed": args.seed, "save_steps": 10 ** 6, "logging_steps": 10, **VARIANTS[name]}
        out = WORK / key
        shutil.rmtree(out, ignore_errors=True)
        t = time.time()
        summary = run_training(model_path=base, harmful="es2:authored-harmful:train",
                               harmless="es2:authored-harmless:train", output=out, config=ES2Config(**options),
                               display=False, log=lambda m: None)
        ratios = list(summary["margins"]["ratio"].values())
        results[key] = {
            "options": VARIANTS[name], "train_s": round(time.time() - t, 1),
            "margin_ratio_min": min(ratios), "margin_ratio_median": sorted(ratios)[len(ratios) // 2],
            "margin_after_min": min(summary["margins"]["after"].values()),
            "kl_harmless": summary["final"].get("es2_kl_harmless"), "eval": evaluate(base, out),
        }
        print(key, json.dumps(results[key]), flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(results, indent=2))
    write_md(results, args.results)


def write_md(results: dict, stem: str = "es2_recipe_toy") -> None:
    b = results["base"]["eval"]
    lines = ["# ES2 recipe on the built-in toy model (unattacked behaviour)", "",
             "Command: `python benchmarks/es2_recipe_toy.py --variants <names> --steps 150`; authored test split "
             f"({b['n_harmful']} harmful, {b['n_harmless']} harmless, {b['n_borderline']} borderline), greedy, "
             "keyword judge.", "",
             "| variant | harmful refusal | harmless compliance | borderline compliance | margin x (min / median) "
             "| harmless KL | train s |", "|---|---|---|---|---|---|---|",
             f"| base | {b['harmful_refusal']:.1%} | {b['harmless_compliance']:.1%} | {b['borderline_compliance']:.1%} "
             "| 1 | 0 | - |"]
    for key, r in results.items():
        if key == "base":
            continue
        e = r["eval"]
        lines.append(f"| {key} {r['options']} | {e['harmful_refusal']:.1%} | {e['harmless_compliance']:.1%} | "
                     f"{e['borderline_compliance']:.1%} | {r['margin_ratio_min']:.1f} / {r['margin_ratio_median']:.1f} "
                     f"| {r['kl_harmless']:.4f} | {r['train_s']:.0f} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
