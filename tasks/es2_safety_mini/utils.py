"""Loaded by lm-eval by file path: only re-exports (the code and registrations live in es2_plugin)."""

from es2_plugin.lm_eval_tasks import ES2RefusalTask, load_authored

__all__ = ["ES2RefusalTask", "load_borderline", "load_harmful", "load_harmless"]


def load_harmful(**metadata):
    return load_authored("harmful", str(metadata.get("split", "test")))


def load_harmless(**metadata):
    return load_authored("harmless", str(metadata.get("split", "test")))


def load_borderline(**metadata):
    return load_authored("borderline", str(metadata.get("split", "test")))
