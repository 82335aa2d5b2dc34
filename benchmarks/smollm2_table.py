"""One comparison table over several `smollm2_bench.py` output directories and ES2 variants (issue 7 ablations).

Each row is one evaluated model: the base of an output directory, or one of its ES2 variants (``es2-NAME``),
with the config keys that differ from ``ES2Config()`` and the headline metrics; push ratios are against the
base of the same directory. Prints a rich table and writes Markdown + JSON.

Usage:
  python benchmarks/smollm2_table.py OUT [OUT ...] --md table.md --json table.json [--title TEXT]
  python benchmarks/smollm2_table.py OUT ... --attacks scav0.05,scav0.01,scav0.01@11-20   # one column per setting
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smollm2_bench import BenchError, _f, _layers_text, _load_rows, read_json, summarise, write_json  # noqa: E402

CONFIG_KEYS = ("objective", "objective_options", "layers", "beta", "reference", "learning_rate", "steps",
               "batch_size", "seed", "kl_on")
COLUMNS = ["run", "model", "ES2 config (≠ default)", "refused JBB", "refused Adv", "SCAV .01 JBB", "SCAV .01 Adv",
           "kw-only .01 JBB", "degen. .01 JBB", "SCAV .001 JBB", "SCAV .001 Adv", "push x .01 JBB",
           "push x .01 Adv", "XSTest over-ref.", "XSTest degen.", "harmless KL"]


def config_diff(train: dict[str, Any] | None) -> dict[str, Any]:
    from es2_plugin.config import ES2Config

    if not train:
        return {}
    cfg = dict(train["summary"]["config"])
    default = ES2Config().__dict__
    out = {k: cfg.get(k) for k in CONFIG_KEYS if k in cfg and k != "layers" and cfg.get(k) != default.get(k)}
    out["layers"] = _layers_text(train["summary"]["layers"])  # as resolved: `auto` becomes the probed list
    if train.get("data", {}).get("harmless_extra"):
        out["harmless"] = "+ borderline"
    return out


def model_name(out: Path) -> str:
    """The ``--model`` of the directory's first run (every run of one directory shares its base)."""
    runs = sorted((out / "results" / "runs").glob("*.json"))
    argv = read_json(runs[0]).get("argv", []) if runs else []
    return Path(argv[argv.index("--model") + 1]).name if "--model" in argv else "default"


def summaries(outs: list[Path], keep: set[str]) -> list[tuple[Path, str, dict[str, Any]]]:
    """``(out, side, summary)`` per model, each directory's result files read once."""
    found = []
    for out in outs:
        sides = [side for side in sides_of(out) if not keep or side in keep]
        rows = _load_rows(out)
        found += [(out, side, summarise(out, side, rows)) for side in sides]
    return found


def side_row(out: Path, side: str, s: dict[str, Any], model: str) -> dict[str, Any]:
    """The headline numbers of one model (``side`` = "base" or the ES2 label) of one output directory."""
    label = "base" if side == "base" else "es2"

    def metric(attack: str, dataset: str, key: str) -> Any:
        return ((s["attacks"].get(f"{attack}_{dataset}") or {}).get(label) or {}).get(key)

    def ratio(attack: str, dataset: str) -> Any:
        return None if label == "base" else (s["attacks"].get(f"{attack}_{dataset}") or {}).get(
            "mean_distance_prompt_ratio")

    rows = s["rows"]
    return {
        "run": out.name, "side": side, "model": model,
        "config": config_diff(rows.get(side, {}).get("train")) if label == "es2" else {},
        "refusal_jbb": metric("none", "jbb", "refusal_rate"),
        "refusal_adv": metric("none", "advbench_heldout", "refusal_rate"),
        "scav001_jbb": metric("scav0.01", "jbb", "success_rate"),
        "scav001_adv": metric("scav0.01", "advbench_heldout", "success_rate"),
        "scav001_kw_jbb": metric("scav0.01", "jbb", "keyword_only_success_rate"),
        "scav001_degen_jbb": metric("scav0.01", "jbb", "degeneration_rate"),
        "scav0001_jbb": metric("scav0.001", "jbb", "success_rate"),
        "scav0001_adv": metric("scav0.001", "advbench_heldout", "success_rate"),
        "push_ratio_jbb": ratio("scav0.01", "jbb"),
        "push_ratio_adv": ratio("scav0.01", "advbench_heldout"),
        "push_jbb": metric("scav0.01", "jbb", "mean_distance_prompt"),
        "xstest_over_refusal": (rows.get(side, {}).get("none_xstest_safe") or {}).get("refusal_rate"),
        "xstest_degenerate": (rows.get(side, {}).get("none_xstest_safe") or {}).get("degeneration_rate"),
        "harmless_kl": (rows.get(side, {}).get("kl") or {}).get("harmless_kl_per_token") if label == "es2" else 0.0,
    }


def sides_of(out: Path) -> list[str]:
    root = out / "results"
    if not root.is_dir():
        raise BenchError(f"{out} holds no smollm2_bench results (no results/ directory)")
    sides = ["base"] if (root / "base").is_dir() else []
    return sides + sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("es2-"))


def attack_columns(attacks: list[str]) -> list[str]:
    return ["run", "model", "refused JBB", "refused Adv"] + [f"{a} {d}" for a in attacks for d in ("JBB", "Adv")]


def attack_cells(row: dict[str, Any], s: dict[str, Any], attacks: list[str]) -> list[str]:
    """Refusal and attack success (JBB / held-out AdvBench) of one model under each named attack setting."""
    label = "base" if row["side"] == "base" else "es2"

    def rate(attack: str, dataset: str, key: str) -> str:
        return _f(((s["attacks"].get(f"{attack}_{dataset}") or {}).get(label) or {}).get(key), True)

    return [f"{row['run']}/{row['side']}", row["model"], rate("none", "jbb", "refusal_rate"),
            rate("none", "advbench_heldout", "refusal_rate")] + [
        rate(a, d, "success_rate") for a in attacks for d in ("jbb", "advbench_heldout")]


def cells(r: dict[str, Any]) -> list[str]:
    cfg = ", ".join(f"{k}={v}" for k, v in r["config"].items()) or ("–" if r["side"] == "base" else "default")
    pct = [_f(r[k], True) for k in ("refusal_jbb", "refusal_adv", "scav001_jbb", "scav001_adv", "scav001_kw_jbb",
                                    "scav001_degen_jbb", "scav0001_jbb", "scav0001_adv")]
    return [f"{r['run']}/{r['side']}", r["model"], cfg, *pct, _f(r["push_ratio_jbb"]), _f(r["push_ratio_adv"]),
            _f(r["xstest_over_refusal"], True), _f(r["xstest_degenerate"], True), _f(r["harmless_kl"])]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outs", nargs="+", type=Path, help="smollm2_bench.py --out directories")
    p.add_argument("--md", type=Path, help="write the table as Markdown here")
    p.add_argument("--json", type=Path, help="write the rows as JSON here")
    p.add_argument("--title", default="SmolLM2: base and ES2 variants")
    p.add_argument("--attacks", default="", metavar="NAMES",
                   help="instead of the headline columns: success on JBB / AdvBench under each of these attack "
                        "settings (comma-separated, e.g. scav0.05,scav0.01,scav0.01@11-20)")
    p.add_argument("--sides", default="", help="only these models, e.g. base,es2-d20 (default: every one)")
    a = p.parse_args(argv)
    outs = [o.expanduser() for o in a.outs]
    keep = {x.strip() for x in a.sides.split(",") if x.strip()}
    attacks = [x.strip() for x in a.attacks.split(",") if x.strip()]
    try:
        found = summaries(outs, keep)
        models = {out: model_name(out) for out in outs}
        rows = [side_row(out, side, s, models[out]) for out, side, s in found]
        if attacks:
            columns = attack_columns(attacks)
            body = [attack_cells(r, s, attacks) for r, (_, _, s) in zip(rows, found, strict=True)]
        else:
            columns, body = COLUMNS, [cells(r) for r in rows]
    except BenchError as exc:
        print(f"smollm2_table: error: {exc}", file=sys.stderr)
        return 2
    from es2_plugin.report import console, table

    con = console()
    con.width = max(con.width, 220)
    con.print(table(a.title, columns, body))
    if a.md:
        lines = [f"### {a.title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
        from es2_plugin.io_utils import atomic_write_text

        atomic_write_text(a.md, "\n".join(lines) + "\n")
    if a.json:
        write_json(a.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
