"""Prompt sources: files, named datasets, and one-line errors for bad input."""

import pytest

from es2_plugin.data import load_records
from es2_plugin.errors import ES2UsageError


def test_csv_default_column_order_and_response(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text('goal,response\n"Do x, then y",Sure\nDo z,\n', encoding="utf-8")
    assert load_records(f) == [{"prompt": "Do x, then y", "response": "Sure"}, {"prompt": "Do z", "response": None}]


def test_jsonl_named_column_and_txt(tmp_path):
    j = tmp_path / "p.jsonl"
    j.write_text('{"q": "a"}\n\n{"q": "b"}\n')
    assert [r["prompt"] for r in load_records(j, column="q")] == ["a", "b"]
    t = tmp_path / "p.txt"
    t.write_text("one\n\ntwo\n")
    assert [r["prompt"] for r in load_records(t)] == ["one", "two"]


def test_registered_authored_dataset_with_split():
    rows = load_records("es2:authored-harmful:test")
    assert 10 < len(rows) < len(load_records("es2:authored-harmful"))
    assert rows[0]["prompt"] and rows[0]["response"]


@pytest.mark.parametrize("name, content, phrase", [
    ("missing.csv", None, "does not exist"),
    ("empty.csv", "", "is empty"),
    ("bad.jsonl", '{"prompt": "a"}\n{oops\n', "line 2: not valid JSON"),
    ("cols.csv", "foo,bar\n1,2\n", "present columns: foo, bar"),
    ("header.csv", "goal\n", "no prompts"),
    ("empty.txt", "\n\n", "holds no prompts"),
    ("p.xlsx", "x", "unknown file type"),
])
def test_bad_sources_give_one_line(tmp_path, name, content, phrase):
    f = tmp_path / name
    if content is not None:
        f.write_text(content)
    with pytest.raises(ES2UsageError) as err:
        load_records(f)
    assert phrase in str(err.value) and "\n" not in str(err.value)


def test_not_utf8_and_missing_named_column(tmp_path):
    f = tmp_path / "latin.csv"
    f.write_bytes("goal\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ES2UsageError, match="not UTF-8"):
        load_records(f)
    g = tmp_path / "g.csv"
    g.write_text("goal\nx\n")
    with pytest.raises(ES2UsageError, match="no column 'prompt'; present columns: goal"):
        load_records(g, column="prompt")


def test_unknown_plugin_dataset_lists_known():
    with pytest.raises(ES2UsageError, match="authored-harmful"):
        load_records("es2:nope")


def test_hf_source_offline_is_one_line():
    with pytest.raises(ES2UsageError, match="cannot load Hugging Face dataset"):
        load_records("hf:surely-not/a-dataset-xyz:train:goal")


def test_shared_advbench_reads_goal_column(shared_data):
    rows = load_records(shared_data / "advbench.csv")
    assert len(rows) > 100 and rows[0]["response"] is None
