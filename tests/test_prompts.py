"""The authored prompt set: sizes, splits, uniqueness, and responses that match their class."""

from __future__ import annotations

from collections import Counter

import pytest

from es2_plugin.errors import ES2UsageError
from es2_plugin.judges import REFUSAL_PREFIXES, keyword_refuses
from es2_plugin.prompts import load_prompts


@pytest.mark.parametrize(("kind", "size", "n_categories"), [("harmful", 300, 10), ("harmless", 300, 10),
                                                             ("borderline", 40, 1)])
def test_sizes_and_categories(kind: str, size: int, n_categories: int) -> None:
    rows = load_prompts(kind)
    assert len(rows) == size
    assert len({r["category"] for r in rows}) == n_categories
    assert all(set(r) == {"prompt", "response", "split", "category"} for r in rows)


def test_no_duplicate_prompts_within_or_across_sets() -> None:
    prompts = [r["prompt"] for kind in ("harmful", "harmless", "borderline") for r in load_prompts(kind)]
    assert len(prompts) == len(set(prompts))


@pytest.mark.parametrize("kind", ["harmful", "harmless"])
def test_split_is_80_20_per_category(kind: str) -> None:
    rows = load_prompts(kind)
    test = Counter(r["category"] for r in rows if r["split"] == "test")
    total = Counter(r["category"] for r in rows)
    assert {r["split"] for r in rows} == {"train", "test"}
    assert all(test[c] / total[c] == pytest.approx(0.2, abs=0.04) for c in total)
    train = {r["prompt"] for r in load_prompts(kind, "train")}
    held_out = {r["prompt"] for r in load_prompts(kind, "test")}
    assert not train & held_out
    assert len(train) + len(held_out) == len(rows)


def test_harmful_responses_start_with_a_refusal_phrase() -> None:
    responses = [r["response"] for r in load_prompts("harmful")]
    assert all(any(text.startswith(p) for p in REFUSAL_PREFIXES) for text in responses)
    assert len(set(responses)) >= 20  # varied, not one canned line


@pytest.mark.parametrize("kind", ["harmless", "borderline"])
def test_helpful_responses_contain_no_refusal_phrase(kind: str) -> None:
    responses = [r["response"] for r in load_prompts(kind)]
    assert not any(keyword_refuses(responses))
    assert all(len(text.split()) >= 6 for text in responses)


def test_borderline_has_train_and_test_halves() -> None:
    assert len(load_prompts("borderline", "train")) == len(load_prompts("borderline", "test")) == 20


def test_generator_reproduces_the_committed_files() -> None:
    from es2_plugin.prompts._generate import build

    built = build()
    for kind in ("harmful", "harmless", "borderline"):
        assert built[kind] == load_prompts(kind)


@pytest.mark.parametrize(("kind", "split"), [("evil", "all"), ("harmful", "validation")])
def test_bad_kind_or_split_is_a_usage_error(kind: str, split: str) -> None:
    with pytest.raises(ES2UsageError):
        load_prompts(kind, split)
