"""Prompt sources: CSV / JSONL / TXT files, ``hf:NAME[:SPLIT][:COLUMN]`` datasets and ``es2:NAME`` plugins.

Every source yields records ``{"prompt": str, "response": str | None}``. Everything a user can get wrong
(missing or empty file, wrong encoding, malformed line, missing column) is one ES2UsageError line.
Stdlib only, except the optional ``datasets`` import for ``hf:`` sources.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from es2_plugin.errors import ES2UsageError

#: Columns tried in order when no column is given.
DEFAULT_COLUMNS = ("goal", "prompt", "instruction", "Goal", "text")
RESPONSE_COLUMNS = ("response", "output", "completion", "answer")  # not AdvBench's "target": a compliance prefix

Record = dict[str, Any]


def _pick(columns: list[str], column: str | None, source: str) -> str:
    if column is not None:
        if column not in columns:
            raise ES2UsageError(f"{source} has no column {column!r}; present columns: {', '.join(columns) or 'none'}")
        return column
    for name in DEFAULT_COLUMNS:
        if name in columns:
            return name
    raise ES2UsageError(f"{source} has none of the default prompt columns ({', '.join(DEFAULT_COLUMNS)}); "
                        f"present columns: {', '.join(columns) or 'none'}; choose one with --harmful-column/"
                        f"--harmless-column")


def _records(rows: list[dict[str, Any]], column: str | None, source: str,
             response_column: str | None = None) -> list[Record]:
    columns = list(rows[0].keys()) if rows else []
    for row in rows[1:]:
        columns += [k for k in row if k not in columns]
    col = _pick(columns, column, source)
    resp = response_column or next((c for c in RESPONSE_COLUMNS if c in columns), None)
    if response_column is not None and response_column not in columns:
        raise ES2UsageError(f"{source} has no column {response_column!r}; present columns: {', '.join(columns)}")
    out = []
    for row in rows:
        prompt = row.get(col)
        if prompt is None or not str(prompt).strip():
            continue
        response = row.get(resp) if resp else None
        out.append({"prompt": str(prompt), "response": str(response) if response not in (None, "") else None})
    return out


def _read_text(path: Path) -> str:
    if not path.exists():
        raise ES2UsageError(f"prompt file {path} does not exist; check the path")
    if path.is_dir():
        raise ES2UsageError(f"{path} is a directory; give a .csv, .jsonl or .txt prompt file")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ES2UsageError(f"prompt file {path} is not UTF-8 (byte {exc.start}); re-save it as UTF-8") from None


def read_csv(path: Path, column: str | None = None, response_column: str | None = None) -> list[Record]:
    text = _read_text(path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        rows = []
        for row in reader:
            if None in row:
                raise ES2UsageError(f"{path} line {reader.line_num}: more fields than the header has; "
                                    f"quote fields that contain commas")
            rows.append(row)
    except csv.Error as exc:
        line = reader.reader.line_num  # DictReader.line_num still points at the previous row here
        raise ES2UsageError(f"{path} line {line}: malformed CSV ({exc}); fix the quoting") from None
    if reader.fieldnames is None:
        raise ES2UsageError(f"prompt file {path} is empty; add a header line and prompts")
    if not rows:
        raise ES2UsageError(f"prompt file {path} has a header but no prompts")
    return _records(rows, column, str(path), response_column)


def read_jsonl(path: Path, column: str | None = None, response_column: str | None = None) -> list[Record]:
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ES2UsageError(f"{path} line {number}: not valid JSON ({exc.msg}); one JSON object per line") from None
        if isinstance(row, str):
            row = {"prompt": row}
        if not isinstance(row, dict):
            raise ES2UsageError(f"{path} line {number}: expected a JSON object like {{\"prompt\": ...}}")
        rows.append(row)
    return _records(rows, column, str(path), response_column)


def read_txt(path: Path) -> list[Record]:
    return [{"prompt": line.strip(), "response": None} for line in _read_text(path).splitlines() if line.strip()]


def _from_hf(spec: str, column: str | None) -> list[Record]:
    parts = spec.split(":")
    name = parts[0]
    split = parts[1] if len(parts) > 1 and parts[1] else "train"
    column = parts[2] if len(parts) > 2 and parts[2] else column
    try:
        import datasets
    except ImportError:
        raise ES2UsageError("hf: prompt sources need the 'datasets' package; pip install datasets") from None
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:  # offline, unknown name, bad split: all the user's to fix
        raise ES2UsageError(f"cannot load Hugging Face dataset {name!r} split {split!r}: "
                            f"{type(exc).__name__}: {str(exc)[:200]} (offline? use a local file instead)") from None
    return _records([dict(r) for r in ds], column, f"hf:{name}:{split}")


def _from_plugin(name: str, split: str | None) -> list[Record]:
    from es2_plugin import plugins

    loader = plugins.get("datasets", name)
    rows = loader(split) if split else loader()
    return _records([r if isinstance(r, dict) else {"prompt": r} for r in rows], "prompt", f"es2:{name}")


def load_records(source: str | Path, column: str | None = None, response_column: str | None = None) -> list[Record]:
    """Prompt records from a file path, ``hf:NAME[:SPLIT][:COLUMN]`` or ``es2:NAME[:SPLIT]``.

    Raises ES2UsageError when the source yields no prompt.
    """
    text = str(source)
    if text.startswith("es2:"):
        name, _, split = text[4:].partition(":")
        records = _from_plugin(name, split or None)
    elif text.startswith("hf:"):
        records = _from_hf(text[3:], column)
    else:
        path = Path(text).expanduser()
        suffix = path.suffix.lower()
        if suffix == ".csv":
            records = read_csv(path, column, response_column)
        elif suffix in (".jsonl", ".json"):
            records = read_jsonl(path, column, response_column)
        elif suffix in (".txt", ""):
            records = read_txt(path)
        else:
            raise ES2UsageError(f"cannot read {path}: unknown file type {suffix!r}; use .csv, .jsonl or .txt")
    if not records:
        raise ES2UsageError(f"prompt source {text} holds no prompts; add prompts or pick another source/column")
    return records
