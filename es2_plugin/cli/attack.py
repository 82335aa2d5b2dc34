"""``es2 attack``: run an attack (SCAV by default) on harmful prompts, judge the answers, report distances.

``--compare`` runs the base model and base+adapter with the same prompts, attack and judge and puts both in
one table, one set of plots and one JSON. Probes are fitted per model (SCAV is white-box: the attacker
probes the model it attacks) unless ``--probes`` gives a directory from ``es2 probe``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from es2_plugin.cli._common import DEFAULT_HARMFUL, DEFAULT_HARMLESS, add_model_args, positive

DEFAULT_DATA = "es2:authored-harmful:test"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attack", help="attack a model (SCAV, RepE, soft prompt, prefill, plugins) and judge it",
                       description="Attack harmful prompts, judge refusal and degeneration, report the SCAV "
                                   "perturbation distance and the success-vs-budget curve.")
    add_model_args(p)
    p.add_argument("--attack", default="scav", help="registered attack name (default scav; see es2 plugins)")
    p.add_argument("--data", default=DEFAULT_DATA, help=f"harmful prompts to attack (default {DEFAULT_DATA})")
    p.add_argument("--column", default=None, help="prompt column of CSV/JSONL sources")
    p.add_argument("--judge", default="keyword", help="registered judge name (default keyword)")
    p.add_argument("--classifier", default=None,
                   help="local HF classifier/guard model directory: success = judged harmful and not degenerate")
    p.add_argument("--probes", default=None, help="probe directory from es2 probe (else probes are fitted)")
    p.add_argument("--harmless", default=DEFAULT_HARMLESS, help=f"harmless prompts to fit probes ({DEFAULT_HARMLESS})")
    p.add_argument("--probe-harmful", default=DEFAULT_HARMFUL, help=f"harmful prompts to fit probes ({DEFAULT_HARMFUL})")
    p.add_argument("--p0", type=float, default=None, help="SCAV target harmful probability in (0, 1) (default 0.01)")
    p.add_argument("--p1", type=float, default=None, help="probe accuracy threshold in (0, 1] (default 0.9)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="attack option (repeatable), e.g. --option prefix='Sure, here is' --option coef=2")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens generated per answer (default 64)")
    p.add_argument("--compare", action="store_true", help="run base and base+--adapter side by side")
    p.add_argument("--output", default="es2-attack", help="directory for JSON and plots (default es2-attack)")
    p.set_defaults(func=run)


def _parse_options(args: argparse.Namespace) -> dict[str, Any]:
    from es2_plugin.errors import ES2UsageError

    options: dict[str, Any] = {}
    for item in args.option:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ES2UsageError(f"--option {item!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    if args.p0 is not None:
        options["p0"] = args.p0
    if args.p1 is not None:
        options["p1"] = args.p1
    return options


def _needs_probes(attack_cls: Any) -> bool:
    """Attacks declare ``needs_probes = True`` to get per-layer probes in ``ctx.probes``."""
    return bool(getattr(attack_cls, "needs_probes", False))


def _run_one(args: argparse.Namespace, adapter: str | None, attack: Any, needs_probes: bool, prompts: list[str],
             judge: Any) -> dict[str, Any]:
    from es2_plugin import report
    from es2_plugin.attacks.base import AttackContext
    from es2_plugin.attacks.metrics import budget_curve, distance_summary
    from es2_plugin.cli._common import load_model, model_label, read_prompts
    from es2_plugin.judges import score_attack
    from es2_plugin.probe import ProbeSet, probe_model

    label = model_label(args, adapter)
    model, tok = load_model(args, adapter)
    from es2_plugin.representations import check_prompts_fit

    check_prompts_fit(model, tok, prompts, source=args.data)
    probes = None
    if args.probes and not args.compare:
        probes = ProbeSet.load(args.probes)
        probes.check_compatible(model, tok)
    elif needs_probes:
        harmful = read_prompts(args.probe_harmful, column=args.column)
        harmless = read_prompts(args.harmless, column=args.column)
        with report.progress(f"{label}: fitting probes", len(harmful) + len(harmless)) as bar:
            probes = probe_model(model, tok, harmful, harmless, batch_size=args.batch_size, progress=bar)
    with report.progress(f"{label}: {args.attack}", len(prompts)) as bar:
        ctx = AttackContext(model, tok, probes=probes, max_new_tokens=args.max_new_tokens,
                            batch_size=args.batch_size, progress=bar)
        out = attack(ctx, prompts)
    scores = score_attack(out.prompts, out.completions, judge=judge)
    dist = distance_summary(out.distance_prompt, out.distance_layers, out.distance_generated)
    curve = budget_curve(out.distance_prompt, scores["success"]) if out.distance_prompt is not None else []
    records = [
        {"prompt": p, "completion": c, "refused": r, "degenerate": d, "success": s, "keyword_only_success": k,
         "distance_prompt": out.distance_prompt[i] if out.distance_prompt is not None else None,
         "distance_layers": out.distance_layers[i] if out.distance_layers is not None else None,
         "distance_generated": out.distance_generated[i] if out.distance_generated is not None else None}
        for i, (p, c, r, d, s, k) in enumerate(zip(out.prompts, out.completions, scores["refused"],
                                                   scores["degenerate"], scores["success"],
                                                   scores["keyword_only_success"], strict=True))
    ]
    summary = {key: scores[key] for key in ("judge", "judge_kind", "n", "success_rate", "keyword_only_success_rate",
                                            "refusal_rate", "degeneration_rate")}
    return {"label": label, "adapter": adapter, "summary": {**summary, **dist}, "budget_curve": curve,
            "probe_accuracy": probes.accuracy if probes is not None else None, "info": out.info, "records": records}


def run(args: argparse.Namespace) -> int:
    from es2_plugin import plugins, report
    from es2_plugin.cli._common import check_output, read_prompts
    from es2_plugin.errors import ES2UsageError
    from es2_plugin.io_utils import atomic_dir, atomic_write_json
    from es2_plugin.judges import ClassifierJudge

    positive("batch-size", args.batch_size)
    positive("limit", args.limit)
    positive("max-new-tokens", args.max_new_tokens)
    if args.compare and not args.adapter:
        raise ES2UsageError("--compare needs --adapter (the ES2 adapter to compare with the base model)")
    if args.compare and args.probes:
        raise ES2UsageError("--probes cannot be used with --compare: probes are fitted on each model (give "
                            "--harmless/--probe-harmful instead)")
    check_output(args.output, "attack.json")
    attack_cls = plugins.get("attacks", args.attack)
    attack = attack_cls(**_parse_options(args))  # validates options before any model is loaded
    plugins.get("judges", args.judge)  # unknown names fail here, before any model is loaded
    judge: Any = args.judge
    prompts = read_prompts(args.data, column=args.column, limit=args.limit)
    if args.classifier:
        judge = ClassifierJudge(args.classifier, trust_remote_code=args.trust_remote_code)
    runs = [None, args.adapter] if args.compare else [args.adapter]
    results = [_run_one(args, adapter, attack, _needs_probes(attack_cls), prompts, judge) for adapter in runs]
    _write(args, results, atomic_dir, atomic_write_json)
    columns = ["model", "attack success", "keyword-only success", "refusal", "degeneration",
               "mean |ε| prompt", "mean |ε| generated", "n"]
    rows = [(r["label"], report.pct(r["summary"]["success_rate"]), report.pct(r["summary"]["keyword_only_success_rate"]),
             report.pct(r["summary"]["refusal_rate"]), report.pct(r["summary"]["degeneration_rate"]),
             r["summary"]["mean_distance_prompt"], r["summary"]["mean_distance_generated"], r["summary"]["n"])
            for r in results]
    con = report.console()
    con.print(report.table(f"es2 attack: {args.attack}, judge {args.judge if not args.classifier else 'classifier'}",
                           columns, rows))
    con.print(f"success = not refused and not degenerate; wrote {args.output}/attack.json and plots")
    return 0


def _write(args: argparse.Namespace, results: list[dict[str, Any]], atomic_dir: Any, atomic_write_json: Any) -> None:
    from es2_plugin.plots import plot_budget_curve, plot_distance_per_layer, plot_probe_accuracy

    payload = {"attack": args.attack, "judge": args.judge, "classifier": args.classifier, "data": args.data,
               "max_new_tokens": args.max_new_tokens, "runs": results}
    with atomic_dir(args.output) as tmp:
        atomic_write_json(tmp / "attack.json", payload)
        if any(r["probe_accuracy"] for r in results):
            plot_probe_accuracy({r["label"]: r["probe_accuracy"] for r in results if r["probe_accuracy"]},
                                tmp / "probe_accuracy.png")
        if any(r["summary"]["mean_distance_per_layer"] for r in results):
            plot_distance_per_layer({r["label"]: r["summary"]["mean_distance_per_layer"] for r in results},
                                    tmp / "distance_per_layer.png")
            plot_budget_curve({r["label"]: r["budget_curve"] for r in results}, tmp / "budget_curve.png")
