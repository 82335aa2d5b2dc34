"""The ``es2`` command. Each subcommand is its own small module with ``add_parser`` and ``run``.

User errors (:class:`ES2UsageError`, bad flags) print one line on stderr and exit 2; ``--debug`` or
``ES2_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from es2_plugin import __version__
from es2_plugin.errors import ES2UsageError, one_line

#: Subcommand modules under ``es2_plugin.cli``, in the order ``es2 --help`` lists them.
COMMAND_MODULES = ["demo", "train", "probe", "attack", "eval", "model", "plugins", "tasks_path"]

DESCRIPTION = """\
ES2 (Embedding Space Separation) safety fine-tuning and harmful-refusal benchmarks.

Fine-tune a chat model so harmful and harmless prompts separate in its hidden states while its answers on
harmless prompts stay those of the base model; fit per-layer probes; run the SCAV embedding attack and
others; evaluate refusal, jailbreak and over-refusal with lm-evaluation-harness."""

EPILOG = """\
examples:
  es2 demo                                     # the whole story on the built-in model, in minutes on a CPU
  es2 train --model M --harmful h.csv --harmless b.jsonl --output out/
  es2 probe --model M --harmful h.csv --harmless b.jsonl
  es2 attack --model M --adapter out/ --attack scav --data h.csv --compare
  es2 eval --model M --adapter out/ --tasks es2_safety_mini
  lm_eval --model hf --model_args pretrained=M --tasks es2_safety
  es2 plugins --json                           # every plugin and what it registers

environment: ES2_DEBUG=1 shows tracebacks, ES2_DISABLE_PLUGINS=name,...|all skips outside plugins,
ES2_CACHE_DIR moves the model cache, ES2_NO_AUTOLOAD=1 turns off lm-eval task discovery."""


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (``es2 train: error: ... (see es2 train --help)``), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
        raise SystemExit(2)


def _format_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    return f"warning: {one_line(str(message))}\n"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="es2",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"es2-plugin {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"es2_plugin.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"es2_plugin.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("ES2_DEBUG", "") not in ("", "0")
    warnings.formatwarning = _format_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except ES2UsageError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"es2 {args.command}: error: {one_line(str(exc))}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"es2 {args.command}: interrupted\n")
        return 130
    except Exception as exc:  # a bug, not a user error: still one line unless --debug
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"es2 {args.command}: internal error: {type(exc).__name__}: {one_line(str(exc))} "
                         f"(rerun with --debug for the traceback and report it)\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
