"""Shared fixtures. Everything runs offline: no hub, local data only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a tiny random Llama chat model (4 layers, hidden 32) with tokenizer and chat template."""
    from tiny_model import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def planted(tiny_model_dir: Path):
    """The tiny model with probes fitted on prompts carrying a planted harmful/harmless signal.

    Returns ``(model, tokenizer, probes, harmful_prompts, harmless_prompts)``; shared by the attack tests.
    """
    from probe_data import planted_prompts

    from es2_plugin.modeling import load_model_and_tokenizer
    from es2_plugin.probe import probe_model

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    harmful, harmless = planted_prompts(30)
    return model, tok, probe_model(model, tok, harmful, harmless), harmful, harmless


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (public prompt sets); tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once per test session (``pip wheel --no-deps``)."""
    import subprocess

    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    (path,) = out.glob("es2_plugin-*.whl")
    return path


@pytest.fixture
def fresh_plugins():
    """Reload the plugin manager before and after a test that changes the installed plugins."""
    from es2_plugin import plugins

    plugins.reset()
    yield plugins
    plugins.reset()
