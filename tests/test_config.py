"""ES2Config: defaults, YAML round trip and one-line errors for bad values."""

import pytest

from es2_plugin.config import ES2Config
from es2_plugin.errors import ES2UsageError


def test_yaml_round_trip_and_nested_es2_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("es2:\n  beta: 0.5\n  layers: 2-3\n  objective_options: {margin: 2.0}\n")
    loaded = ES2Config.from_yaml(cfg)
    assert (loaded.beta, loaded.layers, loaded.objective_options["margin"]) == (0.5, "2-3", 2.0)
    assert ES2Config.from_dict(loaded.to_dict()) == loaded


@pytest.mark.parametrize("bad, phrase", [
    ({"beta": -1}, "beta must be"), ({"temperature": 0}, "temperature must be > 0"),
    ({"p1": 1.5}, "p1 must be in (0, 1]"), ({"p1": 0}, "p1 must be in (0, 1]"),
    ({"learning_rate": 0}, "learning_rate must be > 0"), ({"batch_size": 0}, "batch_size must be"),
    ({"kl_on": "harmful"}, "kl_on must be one of"), ({"objective_options": {"margin": -1}}, "margin must be"),
    ({"reference": "adapter", "full_finetune": True}, "needs LoRA"),
])
def test_bad_values_raise_one_line(bad, phrase):
    with pytest.raises(ES2UsageError, match=None) as err:
        ES2Config(**bad)
    assert phrase in str(err.value) and "\n" not in str(err.value)


def test_unknown_yaml_key_suggests_nearest(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("betta: 1.0\n")
    with pytest.raises(ES2UsageError, match="did you mean 'beta'"):
        ES2Config.from_yaml(cfg)


def test_invalid_yaml_names_the_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("beta: 1\nlayers: [1, 2\n")
    with pytest.raises(ES2UsageError, match="not valid YAML"):
        ES2Config.from_yaml(cfg)


def test_replace_ignores_unset_flags():
    cfg = ES2Config(beta=0.3).replace(beta=None, steps=7)
    assert (cfg.beta, cfg.steps) == (0.3, 7)
    assert ES2Config(full_finetune=True).resolved_reference() == "frozen"
    assert ES2Config().resolved_reference() == "adapter"
