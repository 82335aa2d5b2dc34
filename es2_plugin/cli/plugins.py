"""``es2 plugins``: every plugin, its distribution and version, and what it registers per hook."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list installed ES2 plugins and the names they register",
                       description="List ES2's built-in plugins and outside plugins (entry-point group 'es2').")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from es2_plugin.plugins import plugin_report

    report = plugin_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="es2 plugins")
    table.add_column("plugin")
    table.add_column("distribution")
    table.add_column("kind")
    table.add_column("registers")
    for row in report:
        registers = "\n".join(f"{hook}: {', '.join(names)}" for hook, names in sorted(row["registers"].items()))
        if row["error"]:
            registers += f"\n[red]error: {row['error']}[/red]"
        table.add_row(row["name"], f"{row['distribution']} {row['version']}",
                      "built-in" if row["builtin"] else "entry point", registers or "-")
    Console().print(table)
    return 0
