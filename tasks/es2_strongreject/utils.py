"""Loaded by lm-eval by file path: only re-exports (the code and registrations live in es2_plugin)."""

from es2_plugin.lm_eval_tasks import ES2RefusalTask, load_benchmark

__all__ = ["ES2RefusalTask", "load_strongreject"]


def load_strongreject(**metadata):
    return load_benchmark("strongreject", **metadata)
