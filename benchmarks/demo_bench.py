"""``es2 demo`` over several seeds, each from an empty model cache (model build included), as a new user runs it.

    python benchmarks/demo_bench.py [--seeds 0 1 2] [--work /tmp/es2_demo_bench] [--collect] [-- extra es2 demo flags]

Each seed: ``ES2_CACHE_DIR=WORK/cache-sN es2 demo --seed N --output WORK/demo-sN`` in a subprocess; wall time,
the child's CPU time (user + system, all threads) and the 1-minute load average at start are recorded beside the
demo's own report.json. ``--collect`` only tabulates finished output directories. Results:
benchmarks/results/demo.md (+ demo.json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def run_seed(seed: int, work: Path, extra: list[str]) -> dict:
    cache, out = work / f"cache-s{seed}", work / f"demo-s{seed}"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "ES2_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    es2 = str(Path(sys.executable).with_name("es2"))
    cmd = [es2, "demo", "--seed", str(seed), "--output", str(out), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    t = time.perf_counter()
    log = work / f"demo-s{seed}.log"
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seed": seed, "rc": rc, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_avg_start": round(load, 1),
            "command": " ".join(["ES2_CACHE_DIR=" + str(cache), "es2", *cmd[1:]]), "log": str(log)}


def row(r: dict, rep: dict) -> str:
    b, e = rep["base"], rep["es2"]
    bs, es = b["scav"], e["scav"]
    v = rep["verdict"]

    def p(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    return (f"| {r['seed']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | {r['load_avg_start']} | {rep['times_s']['model']:.0f} | "
            f"{rep['times_s']['es2_train']:.0f} | {rep['n']['attacked']}/{rep['n']['held_out_harmful']} | "
            f"{p(bs['success_rate'])} → {p(es['success_rate'])} | {p(bs['keyword_only_success_rate'])} → "
            f"{p(es['keyword_only_success_rate'])} | {p(bs['degeneration_rate'])} → {p(es['degeneration_rate'])} | "
            f"{bs['mean_distance_prompt']:.2f} → {es['mean_distance_prompt']:.2f} (x{rep['distance_ratio']['prompt']:.1f}) | "
            f"{bs['mean_distance_generated']:.1f} → {es['mean_distance_generated']:.1f} "
            f"(x{rep['distance_ratio']['generated']:.1f}) | {p(b['harmful_refusal'])} → {p(e['harmful_refusal'])} | "
            f"{p(b['harmless_compliance'])} → {p(e['harmless_compliance'])} | "
            f"{p(b['borderline_compliance'])} → {p(e['borderline_compliance'])} | {rep['harmless_kl']:.4f} | "
            f"{'PASS' if v['ok'] else 'FAIL'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path("/tmp/es2_demo_bench"))
    parser.add_argument("--collect", action="store_true", help="only tabulate finished runs in --work")
    parser.add_argument("--results", default="demo", help="results file stem in benchmarks/results")
    args, extra = parser.parse_known_args()
    extra = [x for x in extra if x != "--"]
    args.work.mkdir(parents=True, exist_ok=True)
    runs_file = args.work / "runs.json"
    runs = json.loads(runs_file.read_text()) if runs_file.is_file() else {}
    for seed in args.seeds:
        if not args.collect:
            runs[str(seed)] = run_seed(seed, args.work, extra)
            runs_file.write_text(json.dumps(runs, indent=2))
            print(json.dumps(runs[str(seed)]), flush=True)
    lines, data = [], []
    for seed in args.seeds:
        r = runs.get(str(seed))
        rep_file = args.work / f"demo-s{seed}" / "report.json"
        if not r or not rep_file.is_file():
            continue
        rep = json.loads(rep_file.read_text())
        lines.append(row(r, rep))
        data.append({"run": r, "report": {k: v for k, v in rep.items() if k not in ("settings",)}})
    header = ("| seed | wall (s) | CPU (s) | load avg | model build (s) | ES2 train (s) | attacked | SCAV success "
              "base → ES2 | keyword-only success | degenerate | push at prompt token | push summed over generated "
              "tokens | refusal (no attack) | harmless compliance | borderline compliance | harmless KL | verdict |\n"
              "|" + "---:|" * 16 + "---|")
    (RESULTS / f"{args.results}.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    table = header + "\n" + "\n".join(lines)
    (RESULTS / f"{args.results}_table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
