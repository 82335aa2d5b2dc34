"""Flags and helpers shared by ``es2 probe`` and ``es2 attack``: model loading and prompt sources."""

from __future__ import annotations

import argparse
from typing import Any

from es2_plugin.errors import ES2UsageError

DEFAULT_HARMFUL = "es2:authored-harmful:train"
DEFAULT_HARMLESS = "es2:authored-harmless:train"


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model directory or cached hub id (default: the built-in toy model)")
    p.add_argument("--adapter", default=None, help="PEFT adapter directory (e.g. the output of es2 train)")
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (off by default)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass (default 16)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N prompts (es2 attack: of --data; es2 probe: of each class)")


def positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ES2UsageError(f"--{name} must be a positive integer, got {value}")


def check_output(path: str, marker: str) -> None:
    """Before heavy work: ``path`` must be new, empty, or a previous output of this command (it holds ``marker``).

    The output directory is replaced as a whole at the end, so anything else in it would be lost.
    """
    from pathlib import Path

    from es2_plugin.io_utils import check_writable_dir

    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ES2UsageError(f"output {p} is a file; choose a directory path for --output")
    if p.is_dir() and any(p.iterdir()) and not (p / marker).is_file():
        first = sorted(x.name for x in p.iterdir())[0]
        raise ES2UsageError(f"output {p} is not empty and holds something else ({first}, ...); choose an empty "
                            f"or new directory for --output (it is replaced as a whole)")
    check_writable_dir(p)


def read_prompts(source: str, *, column: str | None = None, limit: int | None = None) -> list[str]:
    """Prompts from a file (.csv/.jsonl/.txt), ``es2:NAME[:SPLIT]`` or ``hf:NAME`` via :mod:`es2_plugin.data`."""
    from es2_plugin.data import load_records

    prompts = [r["prompt"] for r in load_records(source, column)]
    prompts = [p for p in prompts if isinstance(p, str) and p.strip()]
    if not prompts:
        raise ES2UsageError(f"prompt source {source} holds no prompts; add prompts or pick another source")
    return prompts[:limit] if limit else prompts


def load_model(args: argparse.Namespace, adapter: str | None) -> tuple[Any, Any]:
    from es2_plugin.modeling import load_model_and_tokenizer

    return load_model_and_tokenizer(args.model, adapter, trust_remote_code=args.trust_remote_code,
                                    dtype=args.dtype, merge=True)


def model_label(args: argparse.Namespace, adapter: str | None) -> str:
    from pathlib import Path

    base = Path(args.model).name if args.model else "toy"
    return f"{base}+{Path(adapter).name}" if adapter else base
