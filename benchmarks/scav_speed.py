"""SCAV speed: prompts/s of the batched run vs a one-prompt-at-a-time loop, same model, prompts and distances.

    HF_HUB_OFFLINE=1 python benchmarks/scav_speed.py [--model DIR] [--n 64] [--batch-size 32]
        [--max-new-tokens 32] [--threads 2] [--output benchmarks/results/scav_speed.md]

Default model: the built-in toy chat model; prompts: the authored harmful test split (probes fitted on the
authored train splits). The script asserts that both runs produce the same completions and the same
per-prompt, per-layer distances (relative tolerance 1e-4: left padding changes float summation order only).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--p0", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--output", default=str(Path(__file__).parent / "results" / "scav_speed.md"))
    args = ap.parse_args()

    import torch

    from es2_plugin.attacks.base import AttackContext
    from es2_plugin.attacks.scav import SCAV
    from es2_plugin.io_utils import atomic_write_text
    from es2_plugin.modeling import load_model_and_tokenizer
    from es2_plugin.probe import probe_model
    from es2_plugin.prompts import load_prompts

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    model, tok = load_model_and_tokenizer(args.model)
    harmful_train = [r["prompt"] for r in load_prompts("harmful", "train")]
    harmless_train = [r["prompt"] for r in load_prompts("harmless", "train")]
    prompts = [r["prompt"] for r in load_prompts("harmful", "test")]
    prompts = (prompts * (args.n // len(prompts) + 1))[: args.n]
    probes = probe_model(model, tok, harmful_train, harmless_train)
    attack = SCAV(p0=args.p0)

    def timed(batch_size: int):
        ctx = AttackContext(model, tok, probes, max_new_tokens=args.max_new_tokens, batch_size=batch_size)
        start = time.perf_counter()
        out = attack(ctx, prompts)
        return out, time.perf_counter() - start

    attack(AttackContext(model, tok, probes, max_new_tokens=2, batch_size=4), prompts[:4])  # warm-up
    batched, t_batched = timed(args.batch_size)
    single, t_single = timed(1)

    assert batched.completions == single.completions, "batched and one-at-a-time completions differ"
    for a, b in zip(batched.distance_layers, single.distance_layers, strict=True):
        assert a.keys() == b.keys()
        for layer in a:
            assert abs(a[layer] - b[layer]) <= 1e-4 * max(1.0, abs(b[layer])), (layer, a[layer], b[layer])
    for a, b in zip(batched.distance_generated, single.distance_generated, strict=True):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(b)), (a, b)
    max_diff = max(abs(a - b) for a, b in zip(batched.distance_prompt, single.distance_prompt, strict=True))
    rate_b, rate_s = len(prompts) / t_batched, len(prompts) / t_single
    mean_d = sum(batched.distance_prompt) / len(prompts)
    name = args.model or "built-in toy model (4 layers, hidden 128)"
    text = f"""# SCAV speed: batched vs one prompt at a time

Command: `HF_HUB_OFFLINE=1 python benchmarks/scav_speed.py --n {args.n} --batch-size {args.batch_size} \\
--max-new-tokens {args.max_new_tokens} --threads {args.threads}`

- model: {name}; attacked layers {batched.info['layers']} (probe accuracy >= P1 = 0.9), P0 = {args.p0}
- {len(prompts)} prompts (authored harmful test split, repeated), {args.max_new_tokens} new tokens, greedy
- machine: {platform.machine()}, torch {torch.__version__}, {args.threads} threads (2 CPU cores shared with other jobs; load average at the end
  {os.getloadavg()[0]:.1f})

| run | seconds | prompts/s |
|---|---:|---:|
| one at a time | {t_single:.2f} | {rate_s:.2f} |
| batched ({args.batch_size}) | {t_batched:.2f} | {rate_b:.2f} |

Speed-up: **{rate_b / rate_s:.1f}x**. Same completions in both runs; per-prompt, per-layer distances equal
within relative 1e-4 (largest difference of the summed prompt-token push: {max_diff:.2e}; mean push
{mean_d:.3f}).
"""
    atomic_write_text(args.output, text)
    print(text)


if __name__ == "__main__":
    main()
