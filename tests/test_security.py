"""Nothing unsafe is loaded: no pickle, no bare ``torch.load``, ``trust_remote_code`` only on request, safetensors
weights, an lm-eval shim that never raises whatever is broken, and ``ES2_DISABLE_PLUGINS``."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from es2_plugin import _autoload

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("es2_plugin", "hooks", "tasks") for p in (REPO / d).rglob("*.py"))
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.expr) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


@pytest.fixture(scope="module")
def trees() -> dict[str, ast.AST]:
    assert len(SOURCES) > 30, "the scan found too few source files"
    return {str(p.relative_to(REPO)): ast.parse(p.read_text(encoding="utf-8")) for p in SOURCES}


def test_no_pickle_family_imports(trees):
    bad = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path}: import {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
    assert bad == []


def test_no_pickle_or_numpy_pickle_calls(trees):
    bad = []
    for path, tree in trees.items():
        for call in _calls(tree):
            name = _name(call.func)
            if name.split(".")[0] in UNSAFE_MODULES or name.endswith(("pickle.load", "pickle.loads")):
                bad.append(f"{path}:{call.lineno} {name}")
            if name.endswith(("np.load", "numpy.load")) and _is_true(_kw(call, "allow_pickle")):
                bad.append(f"{path}:{call.lineno} {name}(allow_pickle=True)")
    assert bad == []


def test_torch_load_only_with_weights_only_true(trees):
    bad = [f"{path}:{call.lineno}" for path, tree in trees.items() for call in _calls(tree)
           if _name(call.func).endswith("torch.load") and not _is_true(_kw(call, "weights_only"))]
    assert bad == []


def test_no_trust_remote_code_true_default_or_literal(trees):
    bad = []
    for path, tree in trees.items():
        for call in _calls(tree):
            if _is_true(_kw(call, "trust_remote_code")):
                bad.append(f"{path}:{call.lineno} trust_remote_code=True")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                positional = args.posonlyargs + args.args
                pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True))
                pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
                bad += [f"{path}:{node.lineno} {node.name}(trust_remote_code=True)" for a, d in pairs
                        if a.arg == "trust_remote_code" and not (isinstance(d, ast.Constant) and d.value is False)]
            if isinstance(node, ast.Call) and _name(node.func).endswith("add_argument") and any(
                    isinstance(a, ast.Constant) and a.value == "--trust-remote-code" for a in node.args):
                action = _kw(node, "action")
                if not (isinstance(action, ast.Constant) and action.value == "store_true") or _kw(node, "default"):
                    bad.append(f"{path}:{node.lineno} --trust-remote-code is not an off-by-default flag")
    assert bad == []


def test_weights_are_read_and_written_as_safetensors(trees):
    """Our own model loads say use_safetensors=True; saves never turn safetensors off; no torch.save."""
    bad = []
    for path, tree in trees.items():
        for call in _calls(tree):
            name = _name(call.func)
            if name.endswith("torch.save"):
                bad.append(f"{path}:{call.lineno} torch.save")
            if name.endswith(".save_pretrained") and isinstance(_kw(call, "safe_serialization"), ast.Constant) \
                    and not _is_true(_kw(call, "safe_serialization")):
                bad.append(f"{path}:{call.lineno} safe_serialization off")
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            if name.endswith(".from_pretrained") and owner.startswith("AutoModel") and \
                    not _is_true(_kw(call, "use_safetensors")):
                bad.append(f"{path}:{call.lineno} {name} without use_safetensors=True")
    assert bad == []


def test_cli_trust_remote_code_is_off_unless_the_flag_is_given():
    from es2_plugin.cli import build_parser

    parser = build_parser()
    for argv in (["train", "--output", "x"], ["probe"], ["attack"]):
        assert parser.parse_args(argv).trust_remote_code is False
        assert parser.parse_args([*argv, "--trust-remote-code"]).trust_remote_code is True


@pytest.mark.parametrize("flag", [False, True])
def test_model_loading_passes_trust_remote_code_only_when_asked(tiny_model_dir, monkeypatch, flag):
    import transformers

    from es2_plugin.modeling import load_model_and_tokenizer

    seen: list[tuple[str, dict]] = []
    for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, _name=cls.__name__, **kwargs):
            seen.append((_name, dict(kwargs)))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    if flag:
        load_model_and_tokenizer(tiny_model_dir, trust_remote_code=True)
    else:
        load_model_and_tokenizer(tiny_model_dir)
    assert {name for name, _ in seen} == {"AutoTokenizer", "AutoModelForCausalLM"}
    assert all(kwargs.get("trust_remote_code") is flag for _, kwargs in seen)
    assert all(kwargs.get("use_safetensors") is True for name, kwargs in seen if name == "AutoModelForCausalLM")


def test_adapter_without_safetensors_is_refused(tiny_model_dir, tmp_path):
    """A PEFT adapter with only adapter_model.bin (a pickle) is not loaded."""
    from es2_plugin.errors import ES2UsageError
    from es2_plugin.modeling import load_model_and_tokenizer

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))
    (adapter / "adapter_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ES2UsageError, match="only safetensors adapters are loaded"):
        load_model_and_tokenizer(tiny_model_dir, adapter)


# --------------------------------------------------------------------------- the lm-eval autoload shim
BROKEN = {
    "package-raises": {"__init__.py": "raise RuntimeError('es2_plugin is broken')\n", "_autoload.py": None},
    "autoload-syntax-error": {"__init__.py": "", "_autoload.py": "def install(:\n"},
    "autoload-install-raises": {"__init__.py": "", "_autoload.py": "def install():\n    raise OSError('disk')\n"},
    "plugins-raise": {"__init__.py": "", "_autoload.py": None, "plugins.py": "raise ImportError('no pluggy')\n"},
    "hook-module-raises": {"__init__.py": "", "_autoload.py": None,
                           "plugins.py": "def task_dirs():\n    raise ValueError('bad plugin')\n"},
    "missing": {},
}

SHIM_CHECK = """
import sys
sys.path.append({site!r})  # after the fake package: with -S no installed .pth runs, so ours is the only es2_plugin
exec({pth!r})
from lm_eval.tasks import TaskManager
tm = TaskManager(include_defaults=False, include_path=[{user!r}])
import lm_eval.models
from lm_eval.api.registry import get_model
assert get_model("dummy") is not None
print("OK", "my_task" in tm.all_tasks)
"""


@pytest.mark.parametrize("variant", sorted(BROKEN))
def test_autoload_shim_never_raises_whatever_is_broken(tmp_path, variant):
    fake = tmp_path / "fake"
    if BROKEN[variant]:
        pkg = fake / "es2_plugin"
        pkg.mkdir(parents=True)
        for name, text in BROKEN[variant].items():
            source = (REPO / "es2_plugin" / "_autoload.py").read_text() if text is None else text
            (pkg / name).write_text(source)
    else:
        fake.mkdir()
    user = tmp_path / "user_tasks"
    user.mkdir()
    (user / "my_task.yaml").write_text("task: my_task\ndataset_path: json\noutput_type: generate_until\n"
                                       "doc_to_text: x\ndoc_to_target: y\n")
    code = SHIM_CHECK.format(site=sysconfig.get_paths()["purelib"], pth=_autoload.PTH_LINE, user=str(user))
    env = {**{k: v for k, v in os.environ.items() if k != "ES2_NO_AUTOLOAD"}, "PYTHONPATH": str(fake),
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=180,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["OK", "True"], out.stdout + out.stderr[-2000:]
    assert "Traceback" not in out.stderr


# --------------------------------------------------------------------------- ES2_DISABLE_PLUGINS
def test_disable_plugins_keeps_builtins_and_drops_outside_plugins(tmp_path):
    from test_plugins import by_name, make_outside_plugin, run_es2

    site = make_outside_plugin(tmp_path / "site")
    on = by_name(json.loads(run_es2("plugins", "--json", pythonpath=site).stdout))
    off = run_es2("plugins", "--json", pythonpath=site, env={"ES2_DISABLE_PLUGINS": "all"})
    assert off.returncode == 0, off.stderr
    off_rows = by_name(json.loads(off.stdout))
    assert "es2_outside" in on and "es2_outside" not in off_rows
    builtin = {name for name, row in off_rows.items() if row["builtin"]}
    assert builtin and builtin == {name for name, row in on.items() if row["builtin"]}


def test_plugins_come_only_from_installed_entry_points(tmp_path, monkeypatch, fresh_plugins):
    """A module that merely sits on sys.path (no es2 entry point) is never imported as a plugin."""
    (tmp_path / "es2_sneaky.py").write_text("import pathlib\npathlib.Path(__file__).with_name('ran').touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh_plugins.reset()
    fresh_plugins.plugin_report()
    assert not (tmp_path / "ran").exists() and "es2_sneaky" not in sys.modules
