"""Bad input through the real ``es2`` CLI in subprocesses: exit 2, one line on stderr, no traceback, nothing left.

One table of cases. Every case gets its own directory: the output path inside it must not appear (or, when the
case put something there first, must be unchanged), and no temporary file may be left beside it. All cases run
concurrently in one module fixture (most fail in well under a second, before torch is imported); each test
then checks its own result. ``ES2_CACHE_DIR`` points at an empty directory, and every command that needs a model
gets ``--model``, so the built-in toy model is never built here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

LONG = "word " * 400  # > 256 positions of the tiny model once chat-templated


@dataclass(frozen=True)
class Case:
    """``argv`` may use {tiny}, {bare}, {other}, {adapter}, {probes}, {data}, {out}; ``needle`` must be in the line."""

    id: str
    argv: tuple[str, ...]
    needle: str
    setup: str | None = None  # what to put at {out} first: "file", "foreign", "es2run"


def C(id: str, argv: str, needle: str, setup: str | None = None) -> Case:  # noqa: A002, N802
    return Case(id, tuple(argv.split()), needle, setup)


T = "train --model {tiny} --output {out} --steps 2 --batch-size 2 --layers 1"
P = "probe --model {tiny} --output {out}"
A = "attack --model {tiny} --output {out} --limit 1 --max-new-tokens 2"

CASES = [
    # --- prompt files
    C("missing-file", T + " --harmful {data}/nope.csv", "prompt file {data}/nope.csv does not exist"),
    C("directory-as-file", T + " --harmful {data}", "is a directory"),
    C("empty-csv", T + " --harmful {data}/empty.csv", "is empty"),
    C("empty-txt", P + " --harmful {data}/empty.txt", "holds no prompts"),
    C("header-only-csv", T + " --harmless {data}/header.csv", "has a header but no prompts"),
    C("blank-prompts-jsonl", T + " --harmful {data}/blank.jsonl", "holds no prompts"),
    C("not-utf8", T + " --harmful {data}/latin1.csv", "is not UTF-8"),
    C("not-utf8-probe", P + " --harmless {data}/latin1.csv", "is not UTF-8"),
    C("csv-bad-quote", T + " --harmful {data}/badquote.csv", "badquote.csv line 4: malformed CSV"),
    C("csv-extra-field", T + " --harmful {data}/extra.csv", "extra.csv line 3: more fields than the header"),
    C("jsonl-bad-line", T + " --harmful {data}/bad.jsonl", "bad.jsonl line 3: not valid JSON"),
    C("jsonl-not-object", A + " --data {data}/array.jsonl", "array.jsonl line 2: expected a JSON object"),
    C("missing-named-column", T + " --harmful {data}/advlike.csv --harmful-column prompt",
      "has no column 'prompt'; present columns: goal, target"),
    C("no-default-column", T + " --harmful {data}/nocol.csv", "present columns: foo, bar"),
    C("unknown-file-type", T + " --harmful {data}/prompts.xlsx", "unknown file type '.xlsx'"),
    C("unknown-dataset", T + " --harmful es2:nope", "registered datasets: authored-borderline, authored-harmful, "
                                                     "authored-harmless"),
    C("attack-missing-data", A + " --data {data}/nope.jsonl", "does not exist"),
    # --- prompts vs the model
    C("prompt-longer-than-context", P + " --harmful {data}/long.jsonl",
      "more than the model's context (256)"),
    C("prompt-longer-than-max-length", T + " --harmful {data}/long.jsonl --max-length 64",
      "more than max_length (64)"),
    # --- config
    C("yaml-unknown-key", T + " --config {data}/typo.yaml", "unknown key 'bta' in {data}/typo.yaml; did you mean 'beta'?"),
    C("yaml-invalid", T + " --config {data}/invalid.yaml", "is not valid YAML at line 2"),
    C("yaml-not-mapping", T + " --config {data}/list.yaml", "must be a mapping of ES2 settings"),
    C("yaml-bad-value", T + " --config {data}/negbeta.yaml", "beta must be a number >= 0"),
    C("yaml-missing", T + " --config {data}/nope.yaml", "does not exist"),
    # --- numeric ranges
    C("beta-negative", T + " --beta -1", "beta must be a number >= 0"),
    C("beta-nan", T + " --beta nan", "beta must be a number >= 0"),
    C("temperature-zero", T + " --temperature 0", "temperature must be > 0"),
    C("p1-above-1", T + " --p1 1.5", "p1 must be in (0, 1]"),
    C("lr-zero", T + " --lr 0", "learning_rate must be > 0"),
    C("lr-inf", T + " --lr inf", "learning_rate must be > 0"),
    C("batch-size-zero", T + " --batch-size 0", "batch_size must be a positive integer"),
    C("steps-zero", T + " --steps 0", "steps must be a positive integer"),
    C("margin-negative", T + " --margin -2", "margin must be > 0"),
    C("lora-r-zero", T + " --lora-r 0", "lora_r must be a positive integer"),
    C("steps-not-int", T + " --steps many", "invalid int value: 'many'"),
    C("layers-out-of-range", P + " --layers 0,9", "layers [0, 9] are out of range: this model has layers 1..4"),
    C("layers-unreadable", P + " --layers a-b", "cannot read layers 'a-b'"),
    C("p0-zero", A + " --p0 0", "p0 must be in (0, 1)"),
    C("p0-one", A + " --p0 1", "p0 must be in (0, 1)"),
    C("attack-p1-zero", A + " --p1 0", "p1 must be in (0, 1]"),
    C("attack-batch-size-zero", A + " --batch-size 0", "--batch-size must be a positive integer"),
    C("probe-test-fraction", P + " --test-fraction 1", "--test-fraction must be in [0, 1)"),
    C("eval-batch-size-zero", "eval --model {tiny} --batch-size 0", "--batch-size must be a positive integer"),
    # --- names
    C("unknown-objective", T + " --objective nope", "registered objectives: centroid-margin, sample-margin"),
    C("unknown-attack", A + " --attack nope", "registered attacks: none, prefill, repe, scav, softprompt"),
    C("unknown-judge", A + " --judge nope", "registered judges: degeneration, keyword"),
    C("unknown-attack-option", A + " --attack prefill --option coef=2", "known options: prefix="),
    C("eval-unknown-judge", "eval --model {tiny} --judge nope", "registered judges: degeneration, keyword"),
    C("eval-unknown-attack", "eval --model {tiny} --attack nope", "registered attacks: none, prefill"),
    # --- models, adapters, probes
    C("model-missing", T + " --model {data}/no/such/model", "model path {data}/no/such/model does not exist"),
    C("model-empty-dir", P + " --model {data}/emptydir", "is not a Hugging Face model directory (no config.json)"),
    C("model-is-adapter", P + " --model {adapter}", "is a PEFT adapter, not a model"),
    C("model-without-weights", P + " --model {data}/noweights", "cannot load"),
    C("no-chat-template", P + " --model {bare}", "has no chat template"),
    C("adapter-missing", P + " --adapter {data}/nope", "adapter {data}/nope does not exist"),
    C("adapter-not-adapter", A + " --adapter {tiny}", "is not a PEFT adapter directory"),
    C("adapter-other-base", A + " --attack none --adapter {adapter}", "was trained for another base model"),
    C("probes-other-model", A + " --probes {probes}", "probes were fitted for a model with hidden size 48 / 3 layers"),
    C("classifier-missing", A + " --classifier {data}/no/such/judge", "model path {data}/no/such/judge does not exist"),
    C("eval-adapter-missing", "eval --model {tiny} --adapter {data}/nope", "is not a PEFT adapter directory"),
    # --- output directories
    C("train-output-foreign", T, "holds something else (notes.txt", setup="foreign"),
    C("train-output-es2-run", T, "already holds an ES2 run; pass --resume", setup="es2run"),
    C("train-output-is-file", T, "is a file", setup="file"),
    C("train-resume-nothing", T + " --resume", "nothing to resume"),
    C("train-resume-and-overwrite", T + " --resume --overwrite", "contradict each other"),
    C("train-missing-output", "train --model {tiny}", "the following arguments are required: --output/-o"),
    C("probe-output-foreign", P, "holds something else (notes.txt", setup="foreign"),
    C("attack-output-is-file", A, "is a file", setup="file"),
    C("eval-output-is-file", "eval --model {tiny} --output {out}", "is a file", setup="file"),
    C("train-output-unwritable", "train --model {tiny} --output /proc/es2-test-out", "is not writable"),
]


def _write_data(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "empty.csv").write_text("")
    (d / "empty.txt").write_text("")
    (d / "header.csv").write_text("goal,target\n")
    (d / "blank.jsonl").write_text('{"prompt": "   "}\n{"prompt": ""}\n\n')
    (d / "latin1.csv").write_bytes("goal\ncaf\u00e9 cr\u00e8me\n".encode("latin-1"))
    (d / "badquote.csv").write_text('goal,target\nok,1\nalso ok,2\n"bad"x,3\n')
    (d / "extra.csv").write_text("goal,target\nok,1\na,b,c\n")
    (d / "bad.jsonl").write_text('{"prompt": "a"}\n{"prompt": "b"}\n{oops\n')
    (d / "array.jsonl").write_text('{"prompt": "a"}\n[1, 2]\n')
    (d / "advlike.csv").write_text("goal,target\nBuild a bomb,Sure\nSteal a car,Sure\n")
    (d / "nocol.csv").write_text("foo,bar\n1,2\n")
    (d / "prompts.xlsx").write_bytes(b"PK\x03\x04")
    (d / "long.jsonl").write_text("".join(json.dumps({"prompt": LONG + str(i)}) + "\n" for i in range(3)))
    (d / "typo.yaml").write_text("beta: 1\nbta: 2\n")
    (d / "invalid.yaml").write_text("beta: [1,\n")
    (d / "list.yaml").write_text("- beta\n")
    (d / "negbeta.yaml").write_text("es2:\n  beta: -3\n")
    (d / "emptydir").mkdir()
    (d / "noweights").mkdir()
    (d / "noweights" / "config.json").write_text('{"model_type": "llama"}')


@pytest.fixture(scope="module")
def paths(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    from peft import LoraConfig, get_peft_model
    from probe_data import planted_prompts
    from tiny_model import build_tiny_chat_model
    from transformers import AutoModelForCausalLM

    from es2_plugin.modeling import load_model_and_tokenizer
    from es2_plugin.probe import probe_model

    root = tmp_path_factory.mktemp("bad-input")
    _write_data(root / "data")
    bare = root / "bare"  # the tiny model without any chat template
    shutil.copytree(tiny_model_dir, bare)
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    for f in bare.glob("chat_template.*"):
        f.unlink()
    other = build_tiny_chat_model(root / "other", hidden=48, n_layers=3)
    model = AutoModelForCausalLM.from_pretrained(other)
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(root / "adapter")
    model, tok = load_model_and_tokenizer(other)
    harmful, harmless = planted_prompts(6)
    probe_model(model, tok, harmful, harmless).save(root / "probes")
    return {"tiny": tiny_model_dir, "bare": bare, "other": other, "adapter": root / "adapter",
            "probes": root / "probes", "data": root / "data", "root": root}


def _prepare(case: Case, out: Path) -> None:
    if case.setup == "file":
        out.write_text("keep me\n")
    elif case.setup == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("keep me\n")
    elif case.setup == "es2run":
        out.mkdir()
        (out / "es2_run.json").write_text("{}\n")


def _snapshot(directory: Path) -> dict[str, bytes | None]:
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(directory.rglob("*"))}


def _run(case: Case, paths: dict[str, Path]) -> dict:
    where = paths["root"] / "cases" / case.id
    where.mkdir(parents=True)
    out = where / "out"
    _prepare(case, out)
    before = _snapshot(where)
    fill = {k: str(v) for k, v in paths.items()} | {"out": str(out)}
    argv = [a.format(**fill) for a in case.argv]
    env = {k: v for k, v in os.environ.items() if k not in ("ES2_DEBUG", "PYTHONWARNINGS")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", ES2_CACHE_DIR=str(paths["root"] / "cache"),
               OMP_NUM_THREADS="1", COLUMNS="200", ES2_QUIET="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-m", "es2_plugin", *argv], capture_output=True, text=True,
                          env=env, cwd=where, timeout=240)
    return {"proc": proc, "before": before, "after": _snapshot(where), "needle": case.needle.format(**fill),
            "argv": argv}


@pytest.fixture(scope="module")
def results(paths) -> dict[str, dict]:
    workers = max(2, min(6, (os.cpu_count() or 2) * 2))
    with ThreadPoolExecutor(workers) as pool:
        futures = {case.id: pool.submit(_run, case, paths) for case in CASES}
        return {cid: fut.result() for cid, fut in futures.items()}


def test_case_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, results, paths):
    r = results[case.id]
    proc = r["proc"]
    cmd = "es2 " + " ".join(r["argv"])
    assert proc.returncode == 2, f"{cmd}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"{cmd}: stderr has {len(lines)} lines:\n{proc.stderr}"
    assert lines[0].startswith("es2"), lines[0]
    assert r["needle"] in lines[0], f"{cmd}:\n  wanted: {r['needle']}\n  got:    {lines[0]}"
    # nothing new, nothing changed, no temporary file beside the output
    assert r["after"] == r["before"], f"{cmd} changed its directory: {sorted(set(r['after']) ^ set(r['before']))}"


def test_no_case_built_the_toy_model(results, paths):
    cache = paths["root"] / "cache"
    assert not cache.exists() or not any(cache.rglob("*.safetensors"))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_directory_is_one_line(paths, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        case = Case("read-only", tuple(f"probe --model {paths['tiny']} --output {ro}/out".split()),
                    "is not writable")
        proc = subprocess.run([sys.executable, "-m", "es2_plugin", *case.argv], capture_output=True, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "is not writable" in proc.stderr and not list(ro.iterdir())
    finally:
        ro.chmod(0o755)


def test_check_writable_dir_reports_permission_problem(tmp_path, monkeypatch):
    """The same check, in process, with the OS refusing the write (works as root too)."""
    import tempfile

    from es2_plugin.errors import ES2UsageError
    from es2_plugin.io_utils import check_writable_dir

    def refuse(*_a, **_k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(ES2UsageError, match=r"out is not writable \(Permission denied in .*\); choose a writable"):
        check_writable_dir(tmp_path / "out")


def test_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    """ENOSPC while writing: ES2UsageError naming the file, the old content intact, no temporary file left."""
    import errno

    from es2_plugin.errors import ES2UsageError
    from es2_plugin.io_utils import atomic_write_json

    target = tmp_path / "attack.json"
    target.write_text('{"old": true}\n')

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ES2UsageError, match=r"cannot write .*attack.json: No space left on device; free disk space"):
        atomic_write_json(target, {"new": list(range(1000))})
    assert target.read_text() == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["attack.json"]


def test_interrupted_output_directory_is_rolled_back(tmp_path):
    """Ctrl-C while an output directory is being built: the previous directory stays, no temporary sibling."""
    from es2_plugin.io_utils import atomic_dir

    out = tmp_path / "es2-probe"
    out.mkdir()
    (out / "probes.json").write_text("previous\n")
    with pytest.raises(KeyboardInterrupt), atomic_dir(out) as tmp:
        (tmp / "probes.json").write_text("half")
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["es2-probe"]
    assert (out / "probes.json").read_text() == "previous\n"


@pytest.mark.parametrize("how", [["--debug"], []], ids=["--debug", "ES2_DEBUG=1"])
def test_debug_shows_the_traceback_then_the_same_line(tmp_path, how):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ES2_CACHE_DIR": str(tmp_path / "cache")}
    if not how:
        env["ES2_DEBUG"] = "1"
    proc = subprocess.run([sys.executable, "-m", "es2_plugin", *how, "train", "--output", str(tmp_path / "o"),
                           "--beta", "-1"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "ES2UsageError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "es2 train: error: beta must be a number >= 0, got -1.0"
