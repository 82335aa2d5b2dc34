"""Layer selection through the ``es2_select_layers`` hook."""

from types import SimpleNamespace

import pytest

from es2_plugin.errors import ES2UsageError
from es2_plugin.plugins import select_layers

CONFIG = SimpleNamespace(num_hidden_layers=6)


@pytest.mark.parametrize(("requested", "expected"), [
    ("all", [1, 2, 3, 4, 5, 6]), ("2-4", [2, 3, 4]), ("5,1,3", [1, 3, 5]), ([4, 2], [2, 4]), (3, [3]),
])
def test_explicit_layers(requested, expected):
    assert select_layers(CONFIG, None, requested) == expected


def test_auto_takes_layers_whose_probe_reaches_p1():
    report = {"p1": 0.9, "accuracy": {1: 0.6, 2: 0.85, 3: 0.9, 4: 0.97, 5: 0.95, 6: 0.88}}
    assert select_layers(CONFIG, report, "auto") == [3, 4, 5]


def test_auto_falls_back_to_the_best_layer_when_none_reaches_p1():
    report = {"p1": 0.99, "accuracy": {1: 0.6, 2: 0.85, 3: 0.7}}
    assert select_layers(CONFIG, report, "auto") == [2]


@pytest.mark.parametrize("requested", ["0-3", "7", [1, 9], "x-y", ""])
def test_bad_layers_are_a_usage_error(requested):
    with pytest.raises(ES2UsageError):
        select_layers(CONFIG, None, requested)


def test_auto_without_probe_is_a_usage_error():
    with pytest.raises(ES2UsageError, match="layers=auto needs a probe"):
        select_layers(CONFIG, None, "auto")
