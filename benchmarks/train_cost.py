"""ES2 step time and peak memory against plain LoRA SFT, same model, batch and sequences, side by side.

Each configuration runs in its own fresh process (so peak RSS is its own) through the HF Trainer:
  sft            plain LoRA SFT: cross-entropy on the answer tokens of the same 2B sequences
  es2-adapter    ES2, reference logits from the same model with the LoRA adapter disabled (no_grad forward)
  es2-cached     ES2, reference top-k log-probs precomputed once (no reference forward during training)
The cached strategy's KL error against the exact KL is measured on the same batches.

    python benchmarks/train_cost.py [--model DIR] [--steps 20] [--batch-size 8] [--threads 1]

Writes benchmarks/results/train_cost.md (and .json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
MODES = ("sft", "es2-adapter", "es2-cached")


def _examples(model, tok, config, n):
    from es2_plugin.data import load_records
    from es2_plugin.trainer import build_examples, measure_base

    harmful = load_records("es2:authored-harmful:train")[:n]
    harmless = load_records("es2:authored-harmless:train")[:n]
    config, _ = measure_base(model, tok, [r["prompt"] for r in harmful], [r["prompt"] for r in harmless], config)
    return config, build_examples(model, tok, harmful, config), build_examples(model, tok, harmless, config)


def worker(mode: str, model_dir: str, steps: int, batch_size: int, topk: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    from es2_plugin import objectives as O
    from es2_plugin.config import ES2Config
    from es2_plugin.trainer import ES2Collator, ES2Trainer, PairedDataset, cache_reference

    torch.set_flush_denormal(True)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    reference = {"sft": "adapter", "es2-adapter": "adapter", "es2-cached": "cached"}[mode]
    config = ES2Config(layers="all", steps=steps, batch_size=batch_size, reference=reference, cached_topk=topk,
                       max_response_tokens=32)
    n = max(64, batch_size * 4)
    config, h_ex, b_ex = _examples(model, tok, config, n)
    if mode == "es2-cached":
        cache_reference(model, h_ex + b_ex, topk=topk, temperature=config.temperature)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"))
    collate = ES2Collator(tok.pad_token_id, config)

    def sft_collate(pairs):
        batch = collate(pairs)
        labels = batch["input_ids"].clone()
        labels[batch["prompt_mask"].bool() | ~batch["attention_mask"].bool()] = -100
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}

    times: list[float] = []
    cpu: list[float] = []

    class Timer(TrainerCallback):
        """Wall time and this process's CPU time per step (CPU time is robust to other load on a shared box)."""

        def on_step_begin(self, args, state, control, **kw):
            self.t, self.c = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)
            cpu.append(time.process_time() - self.c)

    args = TrainingArguments(output_dir="/tmp/es2_train_cost", max_steps=steps, per_device_train_batch_size=batch_size,
                             learning_rate=1e-3, lr_scheduler_type="constant", logging_steps=10 ** 6,
                             save_strategy="no", remove_unused_columns=False, report_to=[], use_cpu=True,
                             disable_tqdm=True, seed=0)
    data = PairedDataset(h_ex, b_ex)
    if mode == "sft":
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=sft_collate, callbacks=[Timer()])
    else:
        trainer = ES2Trainer(model=model, args=args, train_dataset=data, data_collator=collate, es2_config=config,
                             callbacks=[Timer()])
    trainer.train()
    result = {"mode": mode, "step_s_median": statistics.median(times[3:]), "steps_timed": len(times) - 3,
              "step_cpu_s_median": statistics.median(cpu[3:]),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "tokens_per_batch": None, "vocab": model.config.vocab_size}
    if mode == "es2-cached":  # cached top-k KL vs exact KL on the trained (moved) model
        errs, exacts = [], []
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, collate_fn=collate)
        model.eval()
        for i, batch in enumerate(loader):
            if i == 4:
                break
            mask = batch["kl_weights"] > 0
            with torch.no_grad():
                cur = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                with model.disable_adapter():
                    ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            exact = O.kl_to_reference(cur, ref, mask, weights=batch["kl_weights"]).item()
            cached = O.kl_to_reference_topk(cur, batch["ref_logp"], batch["ref_idx"], mask,
                                            weights=batch["kl_weights"]).item()
            exacts.append(exact)
            errs.append(abs(cached - exact))
        result["kl_exact_mean"] = sum(exacts) / len(exacts)
        result["kl_cached_abs_err_mean"] = sum(errs) / len(errs)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory (default: the built-in toy model)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per class (SFT gets 2x this many rows)")
    parser.add_argument("--topk", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (best median per mode kept)")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print("RESULT " + json.dumps(worker(args.worker, args.model, args.steps, args.batch_size, args.topk)))
        return
    if args.model is None:
        from es2_plugin.toy import ensure_toy_model

        args.model = str(ensure_toy_model())
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    best: dict[str, dict] = {}
    for _round in range(args.rounds):  # interleaved, so load from other processes hits every mode alike
        for mode in MODES:
            cmd = [sys.executable, __file__, "--worker", mode, "--model", args.model, "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--topk", str(args.topk), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
            row = json.loads(line[7:])
            print(row, flush=True)
            if mode not in best or row["step_cpu_s_median"] < best[mode]["step_cpu_s_median"]:
                best[mode] = {**row, "peak_rss_mb": max(row["peak_rss_mb"], best.get(mode, row)["peak_rss_mb"])}
    rows = [best[mode] for mode in MODES]
    sft = rows[0]
    command = (f"python benchmarks/train_cost.py --steps {args.steps} --batch-size {args.batch_size} "
               f"--rounds {args.rounds} "
               f"--topk {args.topk} --threads {args.threads}" + (f" --model {args.model}" if "toy-model" not in args.model else ""))
    lines = [
        "# ES2 training cost vs plain LoRA SFT", "",
        f"Model: `{args.model}` (vocab {sft['vocab']}); LoRA r=16 on all linear layers; {args.batch_size} harmful + "
        f"{args.batch_size} harmless sequences per ES2 step = {2 * args.batch_size} SFT sequences (same tokens: "
        f"prompt + the base model's own answer, up to 32 tokens); CPU, {args.threads} thread(s), median of "
        f"{sft['steps_timed']} steps after 3 warm-up steps, best of {args.rounds} interleaved rounds by CPU time "
        f"(the machine is shared with other jobs, so wall time is noisy; with 1 thread CPU time is the work done); "
        f"each run a fresh process (peak RSS).", "",
        f"Command: `{command}`", "",
        "| run | step CPU time (s) | x SFT | step wall time (s) | x SFT | peak RSS (MB) | x SFT |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['step_cpu_s_median']:.4f} | "
                     f"{r['step_cpu_s_median'] / sft['step_cpu_s_median']:.2f} | "
                     f"{r['step_s_median']:.4f} | {r['step_s_median'] / sft['step_s_median']:.2f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / sft['peak_rss_mb']:.2f} |")
    cached = rows[-1]
    lines += ["", f"Cached top-{args.topk} reference vs exact KL (first-answer-weighted, 4 batches, after training): "
              f"exact {cached['kl_exact_mean']:.5f}, mean absolute error {cached['kl_cached_abs_err_mean']:.2e} "
              f"({100 * cached['kl_cached_abs_err_mean'] / max(cached['kl_exact_mean'], 1e-12):.2f}% of the KL).", ""]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_cost.md").write_text("\n".join(lines), encoding="utf-8")
    (RESULTS / "train_cost.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
