"""Hook specifications: the public contract for plugins that extend ES2.

An outside plugin is a module (or object) with functions named like the specs below, decorated with
``es2_plugin.hookimpl`` and exposed through the ``es2`` entry-point group::

    # pyproject.toml of the plugin
    [project.entry-points.es2]
    my_plugin = "my_plugin"

    # my_plugin.py
    import es2_plugin

    @es2_plugin.hookimpl
    def es2_register_judges(register):
        register("my-guard", my_guard_judge)

ES2's own objectives, judges, attacks, tasks, probe metric, training callback, datasets and layer selection
are registered through these same hooks (``es2_plugin/hooks/builtin_*.py``). A plugin that fails to import or
whose hook raises is reported with one warning and skipped; the others keep working. When two plugins register
the same name, the one registered later wins (outside plugins after built-ins) and a warning names both.

Register callables cheaply: heavy libraries (torch, transformers) should be imported when the callable runs,
not when the hook runs, so that ``es2 plugins`` and ``import es2_plugin`` stay fast.
:func:`es2_plugin.plugins.lazy` wraps a ``"module:attr"`` reference for exactly that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("es2")

Register = Callable[..., None]


@hookspec
def es2_register_objectives(register: Register) -> None:
    """Register separation objectives: ``register(name, fn)``.

    Called once when the objective registry is first needed (training, ``es2 plugins``).
    ``fn(harmful, harmless, **options) -> loss`` receives float tensors ``[n, d]`` and ``[m, d]`` of one layer's
    hidden states (already divided by that layer's base-model hidden-state norm, so values are scale-free) and
    returns a scalar tensor to *minimise*. It must be bounded below and above (an unbounded "maximise the
    distance" diverges) and differentiable. Options come from ``ES2Config.objective_options`` (e.g. ``margin``).
    """


@hookspec
def es2_register_judges(register: Register) -> None:
    """Register refusal judges: ``register(name, fn)``.

    ``fn(prompts: list[str], completions: list[str]) -> list[bool]``, ``True`` meaning the completion refuses.
    Called when judges are first looked up (``es2 attack --judge NAME``, lm-eval tasks, reports). A judge may
    carry a ``kind`` attribute: ``"refusal"`` (default) or ``"harmful"`` for classifiers that return ``True``
    when the completion is harmful *compliance* instead.
    """


@hookspec
def es2_register_attacks(register: Register) -> None:
    """Register attacks: ``register(name, attack)``.

    ``attack`` is a class or factory; ``attack(**options)`` builds an instance. Unknown options must raise
    :class:`es2_plugin.errors.ES2UsageError` listing the known ones (``attack.options`` -- a dict of option
    name to default -- lets the CLI validate before loading a model). The instance is called as
    ``instance(ctx, prompts) -> AttackOutput`` where ``ctx`` is an :class:`es2_plugin.attacks.base.AttackContext`
    (model, tokenizer, probes, generation settings) and the result is an
    :class:`es2_plugin.attacks.base.AttackOutput` (completions, per-prompt perturbation distances if the attack
    moves hidden states, extra info). See ``es2_plugin/attacks/base.py``. Attacks that read ``ctx.probes`` set
    ``needs_probes = True``; ``es2 attack`` and the ``es2-hf`` lm-eval model then load or fit probes for the
    attacked model. Built-ins: ``scav``, ``repe``, ``prefill``, ``softprompt``, ``none``.
    """


@hookspec
def es2_register_tasks(register: Register) -> None:
    """Register lm-eval task directories: ``register(path)``.

    ``path`` is a directory holding lm-eval task YAMLs (and their ``utils.py``). The lm-eval integration adds
    every registered directory to lm-eval's ``TaskManager`` (the user's ``--include_path`` still wins).
    """


@hookspec
def es2_register_probe_metrics(register: Register) -> None:
    """Register representation-probe metrics: ``register(name, fn)``.

    ``fn(harmful: dict[int, Tensor], harmless: dict[int, Tensor], **options) -> dict[str, Any]`` receives
    per-layer hidden states (``layer -> [n, d]``, layer ``l`` meaning ``hidden_states[l]``) of two prompt
    classes and returns JSON-serialisable results, with a per-layer breakdown under ``"per_layer"``
    (e.g. held-out probe accuracy and normalised separation) and scalar summaries at the top level.
    """


@hookspec
def es2_register_training_callbacks(register: Register) -> None:
    """Register Hugging Face ``TrainerCallback`` s for every ES2-enabled trainer: ``register(callback_or_factory)``.

    A factory is called with no arguments when the trainer is built. Every ES2 trainer (``ES2Trainer``,
    ``ES2SFTTrainer``, the axolotl plugin, ``es2 train``) adds all registered callbacks.
    """


@hookspec
def es2_register_datasets(register: Register) -> None:
    """Register named prompt sources: ``register(name, loader)``.

    ``loader(split: str = "all") -> list[dict]``; each record has ``"prompt"`` and optionally ``"response"``.
    A name can be given wherever a prompt file is accepted (``es2 train --harmful es2:authored-harmful``).
    """


@hookspec(firstresult=True)
def es2_select_layers(model_config: Any, probe_report: Any, requested: Any) -> list[int] | None:
    """Choose the layers ES2 separates; the first plugin returning a non-``None`` list wins.

    ``model_config`` is the transformers config, ``probe_report`` the base model's per-layer probe results
    (``{layer: accuracy}``, or ``None`` when no probe was fitted), ``requested`` the user's ``layers`` setting
    (``"auto"``, ``"all"``, a list of ints or a range string like ``"4-12"``). Return layer indices into
    ``hidden_states`` (1..L), or ``None`` to defer to the next plugin.
    """
