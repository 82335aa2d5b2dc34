"""``es2 model path|build|check`` on a temporary cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from es2_plugin import toy
from es2_plugin.cli import main


def test_model_path_prints_the_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("ES2_CACHE_DIR", str(tmp_path))
    assert main(["model", "path", "--seed", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "toy-model" / "seed-2")


def test_model_check_says_missing_then_build_then_ok(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("ES2_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(toy, "DEFAULT_STEPS", 5)
    monkeypatch.setattr(toy, "_evaluate", lambda *a, **k: {"split": "test", "harmful_refusal": 0.5})
    assert main(["model", "check"]) == 1
    assert "not built yet" in capsys.readouterr().out
    assert main(["model", "build"]) == 0
    captured = capsys.readouterr()
    assert "not built yet" in captured.err and captured.out.strip() == str(toy.toy_model_dir(0))
    assert main(["model", "check"]) == 0
    assert "ok (seed 0, 5 steps" in capsys.readouterr().out
