"""Loaded by lm-eval by file path: only re-exports (the code and registrations live in es2_plugin)."""

from es2_plugin.lm_eval_tasks import ES2ProbeTask, load_probe_docs

__all__ = ["ES2ProbeTask", "load_probe_docs"]
