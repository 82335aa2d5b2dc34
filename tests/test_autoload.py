"""The lm-eval autoload shim: start-up files in the wheel, task discovery, opt-out, start-up cost."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from es2_plugin import _autoload

REPO = Path(__file__).resolve().parents[1]


def _python(code: str, *flags: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "ES2_NO_AUTOLOAD"}
    full_env.update(env)
    return subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, env=full_env,
                          timeout=120, cwd=cwd)


def _shim_installed() -> bool:
    return _python("import sys; print('_es2_plugin_autoload' in sys.modules)").stdout.strip() == "True"


needs_shim = pytest.mark.skipif(not _shim_installed(), reason="es2_plugin_autoload.pth is not installed in this "
                                "environment (reinstall: pip install -e . --no-deps)")


@pytest.fixture(scope="module")
def wheel(built_wheel: Path) -> Path:
    return built_wheel


def test_wheel_ships_pth_and_start_files(wheel):
    zf = zipfile.ZipFile(wheel)
    assert zf.read("es2_plugin_autoload.pth").decode() == _autoload.PTH_LINE
    assert zf.read("es2_plugin_autoload.start").decode().strip() == "es2_plugin._autoload:install"
    assert "es2_plugin/_autoload.py" in zf.namelist()


def test_editable_wheel_ships_pth_and_start_files(tmp_path):
    """PEP 660 editable installs (pip install -e .) get the same start-up files as the wheel."""
    code = ("import sys; from setuptools import build_meta; "
            f"print(build_meta.build_editable({str(tmp_path)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    zf = zipfile.ZipFile(tmp_path / out.stdout.strip().splitlines()[-1])
    assert zf.read("es2_plugin_autoload.pth").decode() == _autoload.PTH_LINE
    assert "es2_plugin_autoload.start" in zf.namelist()


def test_pth_line_installs_the_finder_without_importing_the_package(tmp_path):
    code = (f"import sys; exec({_autoload.PTH_LINE!r}); "
            "print('_es2_plugin_autoload' in sys.modules, 'es2_plugin' in sys.modules, 'pluggy' in sys.modules, "
            "sum(getattr(f, '_es2_autoload', False) for f in sys.meta_path))")
    out = _python(code, "-S", PYTHONPATH=str(REPO))  # -S: no installed .pth runs first
    assert out.stdout.split() == ["True", "False", "False", "1"], out.stderr


def test_pth_line_respects_opt_out():
    code = f"import sys; exec({_autoload.PTH_LINE!r}); print('_es2_plugin_autoload' in sys.modules)"
    assert _python(code, "-S", PYTHONPATH=str(REPO), ES2_NO_AUTOLOAD="1").stdout.strip() == "False"


def test_pth_line_never_raises_without_the_package(tmp_path):
    code = f"import sys; exec({_autoload.PTH_LINE!r}); print('ok', '_es2_plugin_autoload' in sys.modules)"
    out = _python(code, "-S", cwd=tmp_path, PYTHONPATH=str(tmp_path))
    assert out.stdout.split() == ["ok", "False"] and out.stderr == ""


def test_user_include_path_comes_last_so_it_wins(tmp_path):
    user = str(tmp_path)
    merged = _autoload._merge_include_path(user)
    assert merged[-1] == user and len(merged) >= 2
    ours = merged[0]
    assert _autoload._merge_include_path([ours, user]) == [ours, user]  # no duplicate of our own dir


@needs_shim
def test_plain_task_manager_knows_es2_tasks():
    out = _python("from lm_eval.tasks import TaskManager; t = TaskManager(); "
                  "print('es2_safety' in t.all_tasks, 'es2_safety_mini' in t.all_tasks, 'hellaswag' in t.all_tasks)")
    assert out.stdout.split() == ["True", "True", "True"], out.stderr


@needs_shim
def test_opt_out_leaves_lm_eval_untouched():
    out = _python("from lm_eval.tasks import TaskManager; print('es2_safety' in TaskManager().all_tasks)",
                  ES2_NO_AUTOLOAD="1")
    assert out.stdout.strip() == "False", out.stderr


@needs_shim
def test_es2_hf_is_registered_only_once_lm_eval_models_is_imported():
    out = _python("import lm_eval.api.registry as r; before = 'es2-hf' in r.model_registry; "
                  "import lm_eval.models; print(before, 'es2-hf' in r.model_registry, 'hf' in r.model_registry)")
    assert out.stdout.split() == ["False", "True", "True"], out.stderr


def test_shim_costs_under_5_ms():
    """Time the .pth line itself (fresh interpreter each run; best of 7 against CPU contention)."""
    code = ("import os, sys, time; os.environ.pop('ES2_NO_AUTOLOAD', None); t = time.perf_counter(); "
            f"exec({_autoload.PTH_LINE!r}); print((time.perf_counter() - t) * 1000, "
            "'_es2_plugin_autoload' in sys.modules)")
    env = {"PYTHONPATH": str(REPO), "ES2_NO_AUTOLOAD": "1"}
    _python(f"import py_compile; py_compile.compile({str(REPO / 'es2_plugin' / '_autoload.py')!r})",
            PYTHONDONTWRITEBYTECODE="")  # pip byte-compiles on install; do the same here
    runs = []
    for _ in range(7):
        ms, loaded = _python(code, "-S", **env).stdout.split()
        assert loaded == "True"
        runs.append(float(ms))
    assert min(runs) < 5.0, runs
