"""The plugin manager: built-ins and outside plugins through the ``es2`` entry-point group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from es2_plugin.errors import ES2UsageError


def make_outside_plugin(root: Path, *, name: str = "es2_outside", body: str | None = None) -> Path:
    """An installed-looking distribution (``*.dist-info`` with an ``es2`` entry point) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    body = body if body is not None else textwrap.dedent('''
        import es2_plugin

        def x_objective(harmful, harmless, **options):
            return (harmful.mean(0) - harmless.mean(0)).norm().neg().tanh()

        def y_judge(prompts, completions):
            return ["no" in c for c in completions]

        @es2_plugin.hookimpl
        def es2_register_objectives(register):
            register("x", x_objective)

        @es2_plugin.hookimpl
        def es2_register_judges(register):
            register("y", y_judge)
    ''')
    (root / f"{name}.py").write_text(body)
    dist = root / f"{name}-1.2.3.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(f"[es2]\n{name} = {name}\n")
    return root


def run_es2(*args: str, pythonpath: Path | None = None, env: dict[str, str] | None = None):
    full_env = {**os.environ, **(env or {})}
    if pythonpath is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), full_env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "es2_plugin", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


def by_name(report: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in report}


def test_outside_plugin_objective_and_judge_show_in_plugins_json(tmp_path):
    site = make_outside_plugin(tmp_path / "site")
    result = run_es2("plugins", "--json", pythonpath=site)
    assert result.returncode == 0, result.stderr
    row = by_name(json.loads(result.stdout))["es2_outside"]
    assert row["distribution"] == "es2_outside" and row["version"] == "1.2.3"
    assert row["builtin"] is False
    assert row["registers"]["objectives"] == ["x"]
    assert row["registers"]["judges"] == ["y"]


@pytest.mark.parametrize("disable", ["es2_outside", "all", "other,es2_outside"])
def test_disabled_outside_plugin_registers_nothing(tmp_path, disable):
    site = make_outside_plugin(tmp_path / "site")
    result = run_es2("plugins", "--json", pythonpath=site, env={"ES2_DISABLE_PLUGINS": disable})
    assert result.returncode == 0, result.stderr
    report = by_name(json.loads(result.stdout))
    assert "es2_outside" not in report
    assert not any("x" in row["registers"].get("objectives", []) for row in report.values())


def test_plugin_that_fails_to_import_warns_and_others_still_work(tmp_path):
    site = make_outside_plugin(tmp_path / "site", name="es2_broken", body="raise RuntimeError('boom at import')\n")
    make_outside_plugin(site)
    result = run_es2("plugins", "--json", pythonpath=site)
    assert result.returncode == 0
    assert "es2_broken" in result.stderr and "boom at import" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    report = by_name(json.loads(result.stdout))
    assert report["es2_outside"]["registers"]["judges"] == ["y"]
    assert "boom at import" in report["es2_broken"]["error"]


def test_plugin_whose_hook_raises_is_skipped_with_a_warning(tmp_path):
    body = textwrap.dedent('''
        import es2_plugin

        @es2_plugin.hookimpl
        def es2_register_judges(register):
            raise ValueError("bad hook")
    ''')
    site = make_outside_plugin(tmp_path / "site", name="es2_badhook", body=body)
    make_outside_plugin(site)
    result = run_es2("plugins", "--json", pythonpath=site)
    assert result.returncode == 0
    assert "es2_badhook" in result.stderr and "bad hook" in result.stderr
    assert by_name(json.loads(result.stdout))["es2_outside"]["registers"]["judges"] == ["y"]


def test_outside_plugin_is_usable_by_name_in_process(tmp_path, monkeypatch, fresh_plugins):
    site = make_outside_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    fresh_plugins.reset()
    judge = fresh_plugins.get("judges", "y")
    assert judge(["p", "q"], ["no way", "sure"]) == [True, False]


def test_same_name_from_two_plugins_warns_and_later_wins(tmp_path, monkeypatch, fresh_plugins):
    site = make_outside_plugin(tmp_path / "site")
    body = textwrap.dedent('''
        import es2_plugin

        @es2_plugin.hookimpl
        def es2_register_judges(register):
            register("y", lambda prompts, completions: [False] * len(completions))
    ''')
    make_outside_plugin(site, name="es2_zzz", body=body)
    monkeypatch.syspath_prepend(str(site))
    fresh_plugins.reset()
    with pytest.warns(UserWarning, match="judge 'y' is registered by plugins"):
        judges = fresh_plugins.judges()
    assert "y" in judges


def test_unknown_name_lists_the_known_ones(fresh_plugins):
    with pytest.raises(ES2UsageError, match=r"unknown judge 'nope'; registered judges: "):
        fresh_plugins.get("judges", "nope")


def test_lazy_registration_imports_only_when_called():
    from es2_plugin.plugins import lazy

    ref = lazy("json:dumps")
    assert ref._target is None
    assert ref([1]) == "[1]"
    assert ref.resolve() is json.dumps
