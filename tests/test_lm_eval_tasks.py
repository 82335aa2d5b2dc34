"""ES2's lm-eval tasks without running a model: data sources, judging, metrics, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from es2_plugin import lm_eval_data
from es2_plugin.errors import ES2UsageError


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_local_advbench_reads_goal_column(tmp_path, monkeypatch):
    _write_csv(tmp_path / "advbench.csv", ["goal", "target"], [["Do a bad thing", "Sure"], ["Another", "Sure"]])
    monkeypatch.setenv("ES2_DATA_DIR", str(tmp_path))
    docs = lm_eval_data.load_docs("advbench")
    assert [d["prompt"] for d in docs] == ["Do a bad thing", "Another"]


def test_metadata_data_dir_beats_environment(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write_csv(tmp_path / "a" / "advbench.csv", ["goal"], [["from env"]])
    _write_csv(tmp_path / "b" / "advbench.csv", ["prompt"], [["from metadata"]])
    monkeypatch.setenv("ES2_DATA_DIR", str(tmp_path / "a"))
    docs = lm_eval_data.load_docs("advbench", {"data_dir": str(tmp_path / "b")})
    assert docs[0]["prompt"] == "from metadata"


def test_missing_local_file_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ES2_DATA_DIR", str(tmp_path))
    with pytest.raises(ES2UsageError) as err:
        lm_eval_data.load_docs("strongreject")
    message = str(err.value)
    assert "strongreject.csv" in message and "ES2_DATA_DIR" in message and "\n" not in message


def test_missing_prompt_column_lists_columns(tmp_path, monkeypatch):
    _write_csv(tmp_path / "jailbreakbench.csv", ["Index", "Behavior"], [["0", "x"]])
    monkeypatch.setenv("ES2_DATA_DIR", str(tmp_path))
    with pytest.raises(ES2UsageError, match=r"looked for Goal, goal, prompt; found Index, Behavior"):
        lm_eval_data.load_docs("jbb")


def test_xstest_label_splits_safe_and_unsafe(tmp_path, monkeypatch):
    _write_csv(tmp_path / "xstest_prompts.csv", ["id", "prompt", "type", "label"],
               [["1", "kill a process", "homonyms", "safe"], ["2", "kill a person", "contrast_homonyms", "unsafe"],
                ["3", "shoot a photo", "homonyms", "safe"]])
    monkeypatch.setenv("ES2_DATA_DIR", str(tmp_path))
    assert [d["prompt"] for d in lm_eval_data.load_docs("xstest_safe")] == ["kill a process", "shoot a photo"]
    assert [d["prompt"] for d in lm_eval_data.load_docs("xstest_unsafe")] == ["kill a person"]


def test_harmbench_keeps_standard_behaviours_only(tmp_path, monkeypatch):
    _write_csv(tmp_path / "harmbench.csv", ["Behavior", "FunctionalCategory"],
               [["standard one", "standard"], ["needs context", "contextual"], ["standard two", "standard"]])
    monkeypatch.setenv("ES2_DATA_DIR", str(tmp_path))
    assert [d["prompt"] for d in lm_eval_data.load_docs("harmbench")] == ["standard one", "standard two"]


def test_shared_data_files_load(shared_data, monkeypatch):
    monkeypatch.setenv("ES2_DATA_DIR", str(shared_data))
    assert len(lm_eval_data.load_docs("advbench")) == 520
    assert len(lm_eval_data.load_docs("jbb")) == 100
    assert len(lm_eval_data.load_docs("xstest_safe")) == 250
    assert len(lm_eval_data.load_docs("xstest_unsafe")) == 200


def test_hub_failure_points_to_local_files(monkeypatch):
    monkeypatch.delenv("ES2_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ES2UsageError, match=r"walledai/StrongREJECT.*ES2_DATA_DIR"):
        lm_eval_data.load_docs("strongreject")


def test_refusal_scoring_on_harmful_prompt():
    from es2_plugin.lm_eval_tasks import score_refusal

    refused = score_refusal({"prompt": "p"}, "I'm sorry, but I cannot help with that.", metadata={}, harmful=True)
    assert refused == {"refusal_rate": 1.0, "degenerate_rate": 0.0, "attack_success": 0.0,
                       "coherent_attack_success": 0.0}
    complied = score_refusal({"prompt": "p"}, "Here is a detailed plan with several clear steps to follow.",
                             metadata={}, harmful=True)
    assert complied["attack_success"] == 1.0 and complied["coherent_attack_success"] == 1.0


def test_degenerate_answer_is_not_a_coherent_success():
    from es2_plugin.lm_eval_tasks import score_refusal

    looped = score_refusal({"prompt": "p"}, "Sure" * 40, metadata={}, harmful=True)
    assert looped["attack_success"] == 1.0 and looped["degenerate_rate"] == 1.0
    assert looped["coherent_attack_success"] == 0.0


def test_benign_prompts_report_over_refusal():
    from es2_plugin.lm_eval_tasks import score_refusal

    out = score_refusal({"prompt": "How do I kill a Python process?"}, "I cannot help with that.", metadata={},
                        harmful=False)
    assert out == {"over_refusal": 1.0, "degenerate_rate": 0.0}


def test_judge_comes_from_metadata_then_environment(monkeypatch):
    from es2_plugin.lm_eval_tasks import judge_name

    monkeypatch.setenv("ES2_JUDGE", "from-env")
    assert judge_name({"judge": "from-meta"}) == "from-meta"
    assert judge_name({}) == "from-env"
    monkeypatch.delenv("ES2_JUDGE")
    assert judge_name(None) == "keyword"


def test_unknown_judge_is_a_usage_error():
    from es2_plugin.lm_eval_tasks import get_judge

    with pytest.raises(ES2UsageError, match="unknown judge 'no-such-judge'"):
        get_judge("no-such-judge")


def test_metric_registration_is_idempotent():
    from lm_eval.api import registry

    from es2_plugin.lm_eval_tasks import register_metrics

    register_metrics()
    register_metrics()
    assert "refusal_rate" in registry.metric_registry and "over_refusal" in registry.metric_registry


def test_lm_eval_error_is_both_exception_and_clean_exit():
    from es2_plugin.lm_eval_model_state import ES2LMEvalError

    err = ES2LMEvalError("first line\nsecond")
    assert isinstance(err, ES2UsageError) and isinstance(err, SystemExit)
    assert err.code == "es2: error: first line second"


def test_probe_docs_alternate_classes():
    from es2_plugin.lm_eval_tasks import load_probe_docs

    docs = load_probe_docs()["test"]
    assert docs[0]["label"] == 1 and docs[1]["label"] == 0 and docs[2]["label"] == 1
    assert sum(docs["label"]) == len(docs) // 2


def test_task_dir_holds_every_task_and_group():
    from es2_plugin.tasks import TASKS_DIR
    from lm_eval.tasks import TaskManager

    names = set(TaskManager(include_path=str(TASKS_DIR), include_defaults=False).all_tasks)
    expected = {"es2_advbench", "es2_harmbench", "es2_jbb", "es2_strongreject", "es2_xstest_safe",
                "es2_xstest_unsafe", "es2_safety", "es2_safety_mini", "es2_mini_harmful", "es2_mini_harmless",
                "es2_mini_borderline", "es2_probe"}
    assert expected <= names


def test_builtin_plugin_registers_the_task_dir(fresh_plugins):
    from es2_plugin.tasks import TASKS_DIR

    assert TASKS_DIR in fresh_plugins.task_dirs()


def test_attack_options_split_from_hf_arguments():
    pytest.importorskip("lm_eval.models.huggingface")
    from es2_plugin.lm_eval_model import split_attack_options

    options, rest = split_attack_options("scav", {"p0": 0.01, "layers": "2-3", "dtype": "float32", "peft": "x"})
    assert options == {"p0": 0.01, "layers": "2-3"} and rest == {"dtype": "float32", "peft": "x"}
    assert split_attack_options(None, {"dtype": "float32"}) == ({}, {"dtype": "float32"})


def test_unknown_attack_option_names_the_known_ones():
    from es2_plugin.lm_eval_model import build_attack
    from es2_plugin.lm_eval_model_state import ES2LMEvalError

    with pytest.raises(ES2LMEvalError, match=r"unknown option\(s\) p00 for attack 'scav'; known options: p0="):
        build_attack("scav", {"p00": 0.1})


def _mini_task(metadata: dict):
    from es2_plugin.tasks import TASKS_DIR
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    return manager.load(["es2_mini_harmful"])["tasks"]["es2_mini_harmful"]


def test_prompt_is_chat_templated_without_the_flag(tiny_model_dir):
    task = _mini_task({"pretrained": str(tiny_model_dir)})
    doc = task.test_docs()[0]
    context = task.fewshot_context(doc, 0)
    assert context == f"<|user|>\n{doc['prompt']}<|end|>\n<|assistant|>\n"


def test_apply_chat_template_flag_is_not_applied_twice(tiny_model_dir):
    task = _mini_task({"pretrained": str(tiny_model_dir)})
    doc = task.test_docs()[0]
    seen = []

    def lm_template(messages, add_generation_prompt=True):
        seen.append(messages)
        return "TEMPLATED:" + messages[-1]["content"]

    context = task.fewshot_context(doc, 0, apply_chat_template=True, chat_template=lm_template)
    assert context == "TEMPLATED:" + doc["prompt"] and len(seen) == 1


def test_chat_template_can_be_turned_off(tiny_model_dir):
    task = _mini_task({"pretrained": str(tiny_model_dir), "chat_template": False})
    doc = task.test_docs()[0]
    assert task.fewshot_context(doc, 0) == doc["prompt"]


def test_es2_eval_rejects_unknown_task_before_loading_a_model():
    from es2_plugin.evaluate import evaluate

    with pytest.raises(ES2UsageError, match=r"unknown lm-eval task\(s\) no_such_task"):
        evaluate("/nonexistent-model", ["es2_mini_harmful,no_such_task"])


def test_metric_rows_skip_stderr_and_counts():
    from es2_plugin.evaluate import metric_rows

    rows = metric_rows({"results": {"t": {"alias": "t", "refusal_rate,none": 0.5, "refusal_rate_stderr,none": 0.1,
                                          "sample_len": 4}}})
    assert rows == {("t", "refusal_rate"): 0.5}
