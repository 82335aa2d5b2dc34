"""``es2 probe``: per-layer probes harmful vs harmless, a table, plots and a reusable probe directory."""

from __future__ import annotations

import argparse

from es2_plugin.cli._common import DEFAULT_HARMFUL, DEFAULT_HARMLESS, add_model_args, positive


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="fit per-layer harmful/harmless probes and plot their accuracy",
                       description="Fit a logistic probe per layer on last-prompt-token hidden states (harmful vs "
                                   "harmless), report held-out accuracy and separation, save probes for es2 attack.")
    add_model_args(p)
    p.add_argument("--harmful", default=DEFAULT_HARMFUL, help=f"harmful prompts (default {DEFAULT_HARMFUL})")
    p.add_argument("--harmless", default=DEFAULT_HARMLESS, help=f"harmless prompts (default {DEFAULT_HARMLESS})")
    p.add_argument("--column", default=None, help="prompt column of CSV/JSONL sources")
    p.add_argument("--layers", default="all", help="'all' (default), a list like 3,5,7 or a range like 4-12")
    p.add_argument("--pooling", choices=["last", "mean"], default="last", help="representation (default last)")
    p.add_argument("--test-fraction", type=float, default=0.3, help="held-out fraction per class (default 0.3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="es2-probe", help="directory for probes, JSON and plots (default es2-probe)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from es2_plugin import report
    from es2_plugin.cli._common import check_output, load_model, model_label, read_prompts
    from es2_plugin.errors import ES2UsageError
    from es2_plugin.hooks.builtin_layers import parse_layers
    from es2_plugin.io_utils import atomic_dir
    from es2_plugin.plots import plot_pca, plot_probe_accuracy
    from es2_plugin.probe import probe_model
    from es2_plugin.representations import collect_states, num_layers

    positive("batch-size", args.batch_size)
    positive("limit", args.limit)
    if not 0 <= args.test_fraction < 1:
        raise ES2UsageError(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    check_output(args.output, "probes.json")
    harmful = read_prompts(args.harmful, column=args.column, limit=args.limit)
    harmless = read_prompts(args.harmless, column=args.column, limit=args.limit)
    model, tok = load_model(args, args.adapter)
    from es2_plugin.representations import check_prompts_fit

    check_prompts_fit(model, tok, harmful, source=args.harmful)
    check_prompts_fit(model, tok, harmless, source=args.harmless)
    layers = parse_layers(args.layers, num_layers(model)) or list(range(1, num_layers(model) + 1))
    with report.progress("collecting hidden states", len(harmful) + len(harmless)) as bar:
        probes = probe_model(model, tok, harmful, harmless, layers, batch_size=args.batch_size,
                             pooling=args.pooling, progress=bar, test_fraction=args.test_fraction, seed=args.seed)
    label = model_label(args, args.adapter)
    probes.meta.update({"adapter": args.adapter, "harmful_source": args.harmful, "harmless_source": args.harmless})
    best = max(probes.layers, key=lambda layer: probes.accuracy[layer])
    with atomic_dir(args.output) as tmp:
        probes.save(tmp)
        plot_probe_accuracy({label: probes.accuracy}, tmp / "probe_accuracy.png")
        h = collect_states(model, tok, harmful, layers=[best], batch_size=args.batch_size, pooling=args.pooling)
        b = collect_states(model, tok, harmless, layers=[best], batch_size=args.batch_size, pooling=args.pooling)
        plot_pca({f"{label}, layer {best}": h[best]}, {f"{label}, layer {best}": b[best]}, tmp / "pca.png")
    rows = [(layer, probes.accuracy[layer], probes.separation[layer], probes.margin[layer], probes.norm[layer],
             f"{probes.p_value[layer]:.1e}") for layer in probes.layers]
    con = report.console()
    con.print(report.table(f"probes: {label} ({len(harmful)} harmful / {len(harmless)} harmless)",
                           ["layer", "held-out acc", "separation", "margin", "mean norm", "p-value"], rows))
    above = probes.layers_above(0.9)
    con.print(f"layers with accuracy >= 0.9 (SCAV's P1): {above or 'none'}; wrote {args.output}/ "
              f"(probes.safetensors, probes.json, probe_accuracy.png, pca.png)")
    return 0
