"""Run lm-eval's ``simple_evaluate`` on ES2's tasks (or any) for a base model and optionally an adapter.

Used by ``es2 eval``. The model type is ``es2-hf`` so the probe task and ``attack=`` work; ES2's task
directories are added explicitly, so this works with ``ES2_NO_AUTOLOAD=1`` too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from es2_plugin.errors import ES2UsageError


def _ensure_registered() -> Any:
    import lm_eval.models  # noqa: F401 - the model registry must exist before es2-hf joins it
    from lm_eval.tasks import TaskManager

    from es2_plugin._autoload import register_model

    register_model()
    return TaskManager


def evaluate(model: str, tasks: Sequence[str], *, adapter: str | None = None, limit: int | float | None = None,
             batch_size: int = 8, device: str = "cpu", max_gen_toks: int | None = None,
             attack: str | None = None, attack_options: dict[str, Any] | None = None,
             metadata: dict[str, Any] | None = None, log_samples: bool = False) -> dict[str, Any]:
    """lm-eval's results dict for one model (+ adapter). Unknown task names raise ES2UsageError."""
    task_manager_cls = _ensure_registered()
    from lm_eval import simple_evaluate

    from es2_plugin.plugins import task_dirs

    model_args: dict[str, Any] = {"pretrained": model}
    if adapter:
        model_args["peft"] = adapter
    if attack:
        model_args["attack"] = attack
        model_args.update(attack_options or {})
    meta = {"pretrained": model, **(metadata or {})}
    manager = task_manager_cls(include_path=[str(d) for d in task_dirs()], metadata=meta)
    names = [t for task in tasks for t in str(task).split(",") if t]
    missing = [t for t in names if t not in manager.all_tasks and not os.path.exists(t)]
    if missing:
        raise ES2UsageError(f"unknown lm-eval task(s) {', '.join(missing)}; ES2's are es2_safety, es2_safety_mini, "
                            f"es2_probe (see lm_eval ls tasks)")
    from es2_plugin import lm_eval_model_state

    try:
        results = simple_evaluate(model="es2-hf", model_args=model_args, tasks=names, limit=limit,
                                  batch_size=batch_size, device=device, task_manager=manager,
                                  log_samples=log_samples,
                                  gen_kwargs=f"max_gen_toks={max_gen_toks}" if max_gen_toks else None)
    finally:
        lm_eval_model_state.reset()
    if results is None:  # non-zero ranks
        return {}
    return results


def metric_rows(results: dict[str, Any]) -> dict[tuple[str, str], float]:
    """``{(task, metric): value}`` of the numeric metrics in an lm-eval results dict (stderr left out)."""
    rows: dict[tuple[str, str], float] = {}
    for task, metrics in sorted(results.get("results", {}).items()):
        for key, value in metrics.items():
            name, _, _filter = key.partition(",")
            if name.endswith("_stderr") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if name in ("alias", "sample_len", "sample_count"):
                continue
            rows[(task, name)] = float(value)
    return rows
