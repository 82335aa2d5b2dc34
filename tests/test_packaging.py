"""One installed namespace: es2_plugin, es2_plugin.hooks (from hooks/), es2_plugin.tasks (from tasks/)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "lm_eval", "peft")


@pytest.mark.parametrize("module", ["es2_plugin", "es2_plugin.hooks", "es2_plugin.hooks.specs", "es2_plugin.cli"])
def test_import_is_cheap(module):
    code = f"import sys, {module}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def wheel(built_wheel: Path) -> Path:
    return built_wheel


def test_wheel_has_one_top_level_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    allowed = {"es2_plugin"} | {n for n in top if n.endswith(".dist-info")} | {n for n in top if n.endswith((".pth", ".start"))}
    assert top <= allowed, top - allowed
    assert "es2_plugin/hooks/specs.py" in names
    assert "es2_plugin/tasks/__init__.py" in names
    assert not any(n.startswith(("hooks/", "tasks/", "tests/", "benchmarks/")) for n in names)


def test_wheel_declares_console_script_and_entry_points(wheel):
    zf = zipfile.ZipFile(wheel)
    (ep,) = [n for n in zf.namelist() if n.endswith("entry_points.txt")]
    text = zf.read(ep).decode()
    assert "es2 = es2_plugin.cli:main" in text
    assert "[lm_eval.tasks]" in text and "[lm_eval.models]" in text


def test_installed_wheel_imports_hooks_and_tasks(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    code = "import es2_plugin.hooks.specs as s, es2_plugin.tasks as t; print(s.__file__); print(t.__file__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    specs_file, tasks_file = (Path(line).resolve() for line in out.stdout.split())
    assert specs_file == (target / "es2_plugin" / "hooks" / "specs.py").resolve()
    assert tasks_file == (target / "es2_plugin" / "tasks" / "__init__.py").resolve()
