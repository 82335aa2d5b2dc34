"""``es2 eval``: lm-eval's ``simple_evaluate`` on ES2's tasks for a base model and, optionally, an adapter."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from es2_plugin.errors import ES2UsageError

#: metric -> True when higher is better (for the before/after verdict column)
HIGHER_IS_BETTER = {"refusal_rate": True, "over_refusal": False, "attack_success": False,
                    "coherent_attack_success": False, "degenerate_rate": False}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="run lm-eval tasks (default es2_safety_mini) before/after an adapter",
                       description="Evaluate a model, and optionally the same model with an adapter, on lm-eval tasks "
                                   "(ES2's or any other) and print a before/after table. Results are also written "
                                   "as lm-eval JSON with --output.")
    p.add_argument("--model", default=None, help="base model directory or cached hub id (default: built-in toy model)")
    p.add_argument("--adapter", default=None, help="PEFT adapter directory (e.g. es2 train output): adds an 'after' run")
    p.add_argument("--tasks", default="es2_safety_mini", help="comma-separated lm-eval tasks/groups (default es2_safety_mini)")
    p.add_argument("--limit", type=float, default=None, help="documents per task (lm-eval --limit)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--max-gen-toks", type=int, default=None, help="override the tasks' max_gen_toks (64)")
    p.add_argument("--attack", default=None, help="run generation under a registered attack, e.g. scav")
    p.add_argument("--attack-option", action="append", default=[], metavar="KEY=VALUE",
                   help="attack option (repeatable), e.g. --attack-option p0=0.01")
    p.add_argument("--judge", default=None, help="refusal judge name (default keyword; or env ES2_JUDGE)")
    p.add_argument("--data-dir", default=None, help="local benchmark files (else ES2_DATA_DIR, else the HF hub)")
    p.add_argument("--output", default=None, help="directory for lm-eval JSON results (results_base.json, ...)")
    p.set_defaults(func=run)


def parse_options(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ES2UsageError(f"--attack-option {item!r} is not KEY=VALUE (e.g. p0=0.01)")
        try:
            out[key.strip()] = float(value) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _verdict(metric: str, before: float, after: float) -> str:
    higher = HIGHER_IS_BETTER.get(metric, True)
    if abs(after - before) < 1e-12:
        return "="
    better = (after > before) == higher
    return "[green]better[/green]" if better else "[red]worse[/red]"


def run(args: argparse.Namespace) -> int:
    from es2_plugin import report
    from es2_plugin.evaluate import evaluate, metric_rows
    from es2_plugin.io_utils import atomic_write_json

    if args.batch_size < 1:
        raise ES2UsageError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.limit is not None and args.limit <= 0:
        raise ES2UsageError(f"--limit must be > 0 (documents per task, or a fraction < 1), got {args.limit}")
    if args.output:
        if Path(args.output).expanduser().is_file():
            raise ES2UsageError(f"output {args.output} is a file; choose a directory path for --output")
        from es2_plugin.io_utils import check_writable_dir

        check_writable_dir(args.output)
    from es2_plugin import plugins

    if args.attack:
        plugins.get("attacks", args.attack)  # unknown names fail before lm-eval is imported
    if args.judge:
        plugins.get("judges", args.judge)
    if args.model is not None:
        from es2_plugin.modeling import check_model_dir

        check_model_dir(args.model)  # before lm-eval is imported: a wrong path fails in a blink
    if args.adapter is not None and not (Path(args.adapter).expanduser() / "adapter_config.json").is_file():
        raise ES2UsageError(f"adapter {args.adapter} is not a PEFT adapter directory (no adapter_config.json); "
                            f"pass the output directory of es2 train")
    if args.model is None:
        from es2_plugin.modeling import default_model_path

        args.model = str(default_model_path())
    metadata: dict[str, Any] = {}
    if args.judge:
        metadata["judge"] = args.judge
    if args.data_dir:
        metadata["data_dir"] = args.data_dir
    common = dict(tasks=[args.tasks], limit=args.limit, batch_size=args.batch_size, device=args.device,
                  max_gen_toks=args.max_gen_toks, attack=args.attack, attack_options=parse_options(args.attack_option),
                  metadata=metadata)
    runs = [("base", None)] + ([("adapter", args.adapter)] if args.adapter else [])
    results: dict[str, dict[str, Any]] = {}
    for label, adapter in runs:
        report.console().print(f"[bold]es2 eval[/bold]: {label} ({args.model}{' + ' + adapter if adapter else ''})")
        results[label] = evaluate(args.model, adapter=adapter, **common)
        if args.output:
            import json

            from lm_eval.utils import handle_non_serializable

            path = Path(args.output) / f"results_{label}.json"
            atomic_write_json(path, json.loads(json.dumps(results[label], default=handle_non_serializable)))
    rows_by_run = {label: metric_rows(res) for label, res in results.items()}
    keys = sorted(set().union(*[set(r) for r in rows_by_run.values()]))
    if args.adapter:
        rows = []
        for task, metric in keys:
            before = rows_by_run["base"].get((task, metric))
            after = rows_by_run["adapter"].get((task, metric))
            verdict = _verdict(metric, before, after) if before is not None and after is not None else ""
            delta = after - before if before is not None and after is not None else None
            rows.append([task, metric, before, after, delta, verdict])
        table = report.table("es2 eval: before / after adapter", ["task", "metric", "base", "adapter", "Δ", ""], rows)
    else:
        table = report.table("es2 eval", ["task", "metric", "value"],
                             [[task, metric, rows_by_run["base"][(task, metric)]] for task, metric in keys])
    report.console().print(table)
    if args.output:
        report.console().print(f"lm-eval JSON results in {args.output}")
    return 0
