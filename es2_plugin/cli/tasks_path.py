"""``es2 tasks-path``: where ES2's lm-eval tasks live, for ``lm_eval --include_path`` when autoload is off."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks-path", help="print the lm-eval task directory (for --include_path)",
                       description="Print the directory holding ES2's lm-eval tasks. Normally not needed: the "
                                   "autoload shim adds it to every lm-eval TaskManager. With ES2_NO_AUTOLOAD=1 use "
                                   "lm_eval --include_path \"$(es2 tasks-path)\" --tasks es2_safety.")
    p.add_argument("--all", action="store_true",
                   help="print every task directory registered by plugins (one per line), not only ES2's own")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.all:
        from es2_plugin.plugins import task_dirs

        for path in task_dirs():
            print(path)
        return 0
    from es2_plugin.tasks import TASKS_DIR

    print(TASKS_DIR)
    return 0
