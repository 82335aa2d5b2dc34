"""Prompt sets behind the lm-eval tasks: public Hugging Face ids by default, local files when asked.

Why a module of its own: lm-eval loads each task's ``utils.py`` by file path (possibly twice), so the real
loading code lives here, in a normal importable module, and ``utils.py`` only points at it.

Where the data comes from, first match wins:
1. ``data_dir`` in the task metadata (``lm_eval --metadata '{"data_dir": "DIR"}'``),
2. the ``ES2_DATA_DIR`` environment variable,
3. the public Hugging Face dataset (needs the hub or a warm ``datasets`` cache).

Local file names (CSV, UTF-8, header row) -- the prompt column is the first of the listed names present:

=================  ==========================  =============================================================
benchmark          file                        prompt column (others kept as metadata)
=================  ==========================  =============================================================
AdvBench           ``advbench.csv``            ``goal`` or ``prompt``
HarmBench          ``harmbench.csv``           ``prompt`` or ``Behavior`` (rows with ``FunctionalCategory``
                                               other than ``standard`` are dropped, so the official
                                               ``harmbench_behaviors_text_all.csv`` can be renamed and used)
JailbreakBench     ``jailbreakbench.csv``      ``Goal``, ``goal`` or ``prompt``
StrongREJECT       ``strongreject.csv``        ``forbidden_prompt`` or ``prompt`` (the official
                                               ``strongreject_dataset.csv`` renamed)
XSTest             ``xstest_prompts.csv``      ``prompt``; ``label`` (``safe``/``unsafe``) splits the two tasks
=================  ==========================  =============================================================
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from es2_plugin.errors import ES2UsageError

DATA_DIR_ENV = "ES2_DATA_DIR"


@dataclass(frozen=True)
class Source:
    """One benchmark: its public dataset id and its local file."""

    title: str
    hf_path: str
    hf_name: str | None
    hf_split: str
    local_file: str
    columns: tuple[str, ...]
    keep: Callable[[dict[str, Any]], bool] | None = None


def _harmbench_standard(row: dict[str, Any]) -> bool:
    category = row.get("FunctionalCategory")
    return category in (None, "", "standard")


def _xstest_label(wanted: str) -> Callable[[dict[str, Any]], bool]:
    def keep(row: dict[str, Any]) -> bool:
        label = str(row.get("label") or "").strip().lower()
        if not label:  # copies without a label column: XSTest's unsafe prompts are the "contrast_*" types
            label = "unsafe" if str(row.get("type", "")).startswith("contrast") else "safe"
        return label == wanted

    return keep


SOURCES: dict[str, Source] = {
    "advbench": Source("AdvBench", "walledai/AdvBench", None, "train", "advbench.csv", ("goal", "prompt")),
    "harmbench": Source("HarmBench (standard)", "walledai/HarmBench", "standard", "train", "harmbench.csv",
                        ("prompt", "Behavior"), _harmbench_standard),
    "jbb": Source("JailbreakBench (harmful)", "JailbreakBench/JBB-Behaviors", "behaviors", "harmful",
                  "jailbreakbench.csv", ("Goal", "goal", "prompt")),
    "strongreject": Source("StrongREJECT", "walledai/StrongREJECT", None, "train", "strongreject.csv",
                           ("forbidden_prompt", "prompt")),
    "xstest_safe": Source("XSTest (safe)", "walledai/XSTest", None, "test", "xstest_prompts.csv", ("prompt",),
                          _xstest_label("safe")),
    "xstest_unsafe": Source("XSTest (unsafe)", "walledai/XSTest", None, "test", "xstest_prompts.csv", ("prompt",),
                            _xstest_label("unsafe")),
}


def data_dir(metadata: dict[str, Any] | None = None) -> Path | None:
    """The local data directory the user chose (metadata ``data_dir`` beats ``ES2_DATA_DIR``), or None."""
    raw = (metadata or {}).get("data_dir") or os.environ.get(DATA_DIR_ENV, "")
    return Path(str(raw)).expanduser() if str(raw).strip() else None


def _pick_column(columns: list[str], wanted: tuple[str, ...], where: str) -> str:
    for name in wanted:
        if name in columns:
            return name
    raise ES2UsageError(f"{where} has no prompt column (looked for {', '.join(wanted)}; found "
                        f"{', '.join(columns) or 'no columns'}); rename the column or fix the file")


def _rows_to_docs(rows: list[dict[str, Any]], src: Source, where: str) -> list[dict[str, Any]]:
    columns = list(rows[0].keys()) if rows else []
    column = _pick_column(columns, src.columns, where)
    if src.local_file == "xstest_prompts.csv" and "label" not in columns and "type" not in columns:
        raise ES2UsageError(f"{where} has no 'label' column (safe/unsafe) to split XSTest; found {', '.join(columns)}")
    docs = []
    for row in rows:
        if src.keep is not None and not src.keep(row):
            continue
        prompt = str(row.get(column) or "").strip()
        if prompt:
            docs.append({"prompt": prompt, "category": str(row.get("category") or row.get("Category")
                                                             or row.get("type") or row.get("SemanticCategory") or "")})
    if not docs:
        raise ES2UsageError(f"{where} yields no prompts for {src.title}; check the file's rows and columns")
    return docs


def read_local(src: Source, directory: Path) -> list[dict[str, Any]]:
    path = directory / src.local_file
    if not directory.is_dir():
        raise ES2UsageError(f"data directory {directory} does not exist (from --metadata data_dir or "
                            f"{DATA_DIR_ENV}); point it at a folder holding {src.local_file}")
    if not path.is_file():
        raise ES2UsageError(f"{directory} has no {src.local_file} (needed for {src.title}); add it (prompt column "
                            f"{' or '.join(src.columns)}) or unset {DATA_DIR_ENV} to load {src.hf_path} from the hub")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ES2UsageError(f"cannot read {path}: {exc}; save it as a UTF-8 CSV with a header row") from None
    return _rows_to_docs(rows, src, str(path))


def read_hub(src: Source) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(src.hf_path, src.hf_name, split=src.hf_split)
    except Exception as exc:  # offline, gated, renamed: the user fixes it by pointing at local files
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ES2UsageError(f"cannot load {src.hf_path} from the Hugging Face hub ({first}); set {DATA_DIR_ENV}=DIR "
                            f"or --metadata '{{\"data_dir\": \"DIR\"}}' with {src.local_file} in DIR") from None
    return _rows_to_docs([dict(r) for r in ds], src, f"{src.hf_path} ({src.hf_split})")


def load_docs(key: str, metadata: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Docs ``{"prompt", "category"}`` of one benchmark, from the local directory if one is set."""
    src = SOURCES[key]
    directory = data_dir(metadata)
    return read_local(src, directory) if directory is not None else read_hub(src)


def authored_docs(kind: str, split: str = "test") -> list[dict[str, Any]]:
    """The package's own prompts (``es2_plugin.prompts``): offline, seconds to run."""
    from es2_plugin.prompts import load_prompts

    return [{"prompt": r["prompt"], "category": r.get("category", "")} for r in load_prompts(kind, split)]


def as_dataset(docs: list[dict[str, Any]], split: str = "test") -> Any:
    """lm-eval's ``custom_dataset`` must return a mapping of split name to a ``datasets.Dataset``."""
    import datasets

    return datasets.DatasetDict({split: datasets.Dataset.from_list(docs)})
