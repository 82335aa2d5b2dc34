"""ES2's built-in training callback: keeps the ES2 metrics history and, from ``es2 train``, a rich display.

The metrics themselves (``es2_sep``, ``es2_kl``, ``es2_kl_harmless``, ``es2_margin_L<l>``) are added to the
Trainer's logs by :class:`es2_plugin.trainer.ES2Mixin`; this callback only records and shows them.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

#: Set by ``es2 train``: show a rich progress bar with the live metrics instead of the Trainer's printouts.
CLI_DISPLAY = False


class ES2MetricsCallback(TrainerCallback):
    """Records every logged ES2 metric in ``history``; shows a rich progress bar when ``CLI_DISPLAY`` is on."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self._progress: Any = None
        self._task: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if CLI_DISPLAY and state.is_world_process_zero and self._progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            from es2_plugin.report import console, quiet

            self._progress = Progress(TextColumn("[bold]ES2 training"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console(),
                                      disable=quiet())
            self._progress.start()
            self._task = self._progress.add_task("train", total=state.max_steps, completed=state.global_step,
                                                 info="")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if not logs or "es2_sep" not in logs:
            return
        entry = {"step": state.global_step, **{k: float(v) for k, v in logs.items() if k.startswith("es2_")}}
        self.history.append(entry)
        if self._progress is not None:
            margins = [v for k, v in entry.items() if k.startswith("es2_margin_L")]
            info = (f"sep {entry['es2_sep']:.3f}  KL {entry['es2_kl']:.4f}  harmless KL "
                    f"{entry.get('es2_kl_harmless', 0.0):.4f}  margin {min(margins):.2f}-{max(margins):.2f}")
            self._progress.update(self._task, info=info)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
