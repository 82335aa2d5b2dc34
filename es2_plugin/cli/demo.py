"""``es2 demo``: built-in model -> probe -> SCAV -> ES2 -> probe + SCAV again -> table, plots and reports."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "the whole ES2 story on the built-in model in a few minutes on a CPU (no downloads)"

EPILOG = """\
examples:
  es2 demo                                     # writes ./es2-demo (report.md, report.json, PNG plots)
  es2 demo --seed 1 --output demo-seed1
  es2 demo --steps 40 --limit 24               # a quicker, rougher run
  es2 demo --rebuild-model                     # retrain the built-in model first
The verdict line says whether this run shows ES2's effect (attack success falls, the push grows, harmless
behaviour stays) against fixed targets; it is printed whatever it says."""


def _int_at_least(minimum: int, what: str) -> Any:
    """An argparse type: an integer >= ``minimum``, with a one-line message otherwise."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            n = minimum - 1
        if n < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
        return n

    return parse


_positive = _int_at_least(1, "a positive integer")
_seed = _int_at_least(0, "an integer >= 0")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", "-o", default="es2-demo",
                   help="output directory (default ./es2-demo; a previous demo output there is replaced)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the built-in model and of ES2 (default 0)")
    p.add_argument("--steps", type=_positive, default=None, help="ES2 training steps (default: the demo recipe's)")
    p.add_argument("--limit", type=_positive, default=None, help="use only the first N prompts of every prompt set")
    p.add_argument("--max-new-tokens", type=_positive, default=32, help="tokens generated per answer (default 32)")
    p.add_argument("--rebuild-model", action="store_true", help="retrain the built-in model even when cached")
    p.add_argument("--model-steps", type=_positive, default=None,
                   help="training steps of the built-in model (default: its recipe's; fewer only for quick tests)")
    p.add_argument("--threads", type=_positive, default=None,
                   help="torch CPU threads (default $ES2_THREADS or 1; 1 is fastest on a busy machine)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from es2_plugin.demo import DemoSettings, env_threads, run_demo, table_rows
    from es2_plugin.report import console, table

    settings = DemoSettings(output=args.output, seed=args.seed, steps=args.steps, limit=args.limit,
                            max_new_tokens=args.max_new_tokens, rebuild_model=args.rebuild_model,
                            model_steps=args.model_steps, threads=args.threads or env_threads())
    out = console()
    report = run_demo(settings, console=out)
    out.print(table(f"ES2 demo (built-in model, seed {args.seed}): before / after", ["", "base", "ES2"],
                    table_rows(report)))
    verdict = report["verdict"]
    style = "bold green" if verdict["ok"] else "bold red"
    out.print(f"Verdict: {verdict['line']}", style=style, markup=False, highlight=False)
    times = report["times_s"]
    out.print(f"Wrote report.md, report.json and 3 PNG plots to {report['output']} in {times['total']:.0f} s "
              f"({report['cpu_s']:.0f} s CPU).", markup=False, highlight=False)
    return 0
