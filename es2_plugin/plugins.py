"""The one plugin manager: ES2's built-ins and outside plugins from the ``es2`` entry-point group.

Every registry (objectives, judges, attacks, datasets, probe metrics, task directories, training callbacks)
is collected by calling each plugin's hook on its own, so a plugin whose hook raises is reported with one
warning and skipped while every other plugin still works.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pluggy

from es2_plugin import __version__
from es2_plugin.errors import ES2UsageError

ENTRY_POINT_GROUP = "es2"
DISABLE_ENV = "ES2_DISABLE_PLUGINS"

#: registry kind -> hook name
NAMED_HOOKS: dict[str, str] = {
    "objectives": "es2_register_objectives",
    "judges": "es2_register_judges",
    "attacks": "es2_register_attacks",
    "datasets": "es2_register_datasets",
    "probe_metrics": "es2_register_probe_metrics",
}
LIST_HOOKS: dict[str, str] = {
    "tasks": "es2_register_tasks",
    "training_callbacks": "es2_register_training_callbacks",
}


class ES2PluginWarning(UserWarning):
    """A plugin could not be loaded or one of its hooks failed; it is skipped."""


def _warn(message: str) -> None:
    warnings.warn(message, ES2PluginWarning, stacklevel=3)


class lazy:  # noqa: N801 - used like a function: lazy("pkg.mod:attr")
    """A callable standing in for ``"module:attr"`` until first use, so registering it imports nothing."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self._target: Any = None

    def resolve(self) -> Any:
        if self._target is None:
            module, _, attr = self.ref.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self._target = obj
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in {"ref", "_target"}:
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"lazy({self.ref!r})"


def resolve(obj: Any) -> Any:
    """The real object behind a possibly lazy registration."""
    return obj.resolve() if isinstance(obj, lazy) else obj


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    builtin: bool
    module: str
    registers: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None


@dataclass
class _State:
    pm: pluggy.PluginManager
    infos: dict[str, PluginInfo]
    registries: dict[str, dict[str, tuple[Any, str]]] = field(default_factory=dict)
    lists: dict[str, list[tuple[Any, str]]] = field(default_factory=dict)


def _disabled_names() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip().lower() for part in raw.split(",") if part.strip()}


def _load_builtins(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
    from es2_plugin.hooks import BUILTIN_PLUGINS

    for name, module_name in BUILTIN_PLUGINS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # not written yet in this build: nothing to register
                continue
            raise
        pm.register(module, name=name)
        infos[name] = PluginInfo(name, "es2-plugin", __version__, True, module_name)


def _load_entry_points(pm: pluggy.PluginManager, infos: dict[str, PluginInfo]) -> None:
    disabled = _disabled_names()
    seen: set[str] = set()
    for ep in md.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen:
            continue
        seen.add(ep.name)
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        dist_version = dist.version if dist is not None else "?"
        if "all" in disabled or ep.name.lower() in disabled or dist_name.lower() in disabled:
            continue
        info = PluginInfo(ep.name, dist_name, dist_version, False, ep.value)
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken plugin must never take ES2 down
            info.error = f"{type(exc).__name__}: {exc}"
            _warn(f"es2 plugin {ep.name!r} ({dist_name}) failed to load and is skipped: {info.error}")
        infos[ep.name] = info


@cache
def _state() -> _State:
    from es2_plugin.hooks import specs

    pm = pluggy.PluginManager("es2")
    pm.add_hookspecs(specs)
    infos: dict[str, PluginInfo] = {}
    _load_builtins(pm, infos)
    _load_entry_points(pm, infos)
    return _State(pm, infos)


def get_plugin_manager() -> pluggy.PluginManager:
    return _state().pm


def reset() -> None:
    """Forget loaded plugins and registries (tests, or after installing a plugin at run time)."""
    _state.cache_clear()


def _impls(hook_name: str) -> list[pluggy.HookImpl]:
    return list(getattr(_state().pm.hook, hook_name).get_hookimpls())


def _call_each(hook_name: str, make_register: Callable[[str], Callable[..., None]]) -> None:
    state = _state()
    for impl in _impls(hook_name):
        try:
            impl.function(register=make_register(impl.plugin_name))
        except Exception as exc:
            info = state.infos.get(impl.plugin_name)
            if info is not None:
                info.error = f"{hook_name}: {type(exc).__name__}: {exc}"
            _warn(f"es2 plugin {impl.plugin_name!r} failed in {hook_name} and is skipped there: "
                  f"{type(exc).__name__}: {exc}")


def registry(kind: str) -> dict[str, Any]:
    """``name -> object`` for one named registry (``objectives``, ``judges``, ``attacks``, ...)."""
    state = _state()
    if kind not in state.registries:
        entries: dict[str, tuple[Any, str]] = {}

        def make_register(plugin: str) -> Callable[..., None]:
            def register(name: str, obj: Any) -> None:
                if not isinstance(name, str) or not name:
                    raise TypeError(f"{kind} names must be non-empty strings, got {name!r}")
                if name in entries and entries[name][1] != plugin:
                    _warn(f"{kind[:-1]} {name!r} is registered by plugins {entries[name][1]!r} and {plugin!r}; "
                          f"using the one from {plugin!r}")
                entries[name] = (obj, plugin)
                if plugin in state.infos:
                    state.infos[plugin].registers.setdefault(kind, []).append(name)

            return register

        _call_each(NAMED_HOOKS[kind], make_register)
        state.registries[kind] = entries
    return {name: obj for name, (obj, _plugin) in state.registries[kind].items()}


def _list_registry(kind: str) -> list[Any]:
    state = _state()
    if kind not in state.lists:
        items: list[tuple[Any, str]] = []

        def make_register(plugin: str) -> Callable[..., None]:
            def register(item: Any) -> None:
                items.append((item, plugin))
                if plugin in state.infos:
                    if isinstance(item, lazy):
                        label = item.ref.rpartition(":")[2]
                    elif isinstance(item, (str, Path)):
                        label = str(item)
                    else:
                        label = getattr(item, "__name__", repr(item))
                    state.infos[plugin].registers.setdefault(kind, []).append(label)

            return register

        _call_each(LIST_HOOKS[kind], make_register)
        state.lists[kind] = items
    return [item for item, _plugin in state.lists[kind]]


def get(kind: str, name: str) -> Any:
    """Look up one registered name, resolving lazy registrations; unknown names list the known ones."""
    entries = registry(kind)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        singular = kind[:-1].replace("_", " ")
        raise ES2UsageError(f"unknown {singular} {name!r}; registered {kind.replace('_', ' ')}: {known} "
                            f"(install a plugin that registers it, or pick one of these)")
    return resolve(entries[name])


def objectives() -> dict[str, Any]:
    return registry("objectives")


def judges() -> dict[str, Any]:
    return registry("judges")


def attacks() -> dict[str, Any]:
    return registry("attacks")


def datasets() -> dict[str, Any]:
    return registry("datasets")


def probe_metrics() -> dict[str, Any]:
    return registry("probe_metrics")


def task_dirs() -> list[Path]:
    """Every registered lm-eval task directory that exists."""
    dirs: list[Path] = []
    for item in _list_registry("tasks"):
        path = Path(item)
        if path.is_dir():
            dirs.append(path)
        else:
            _warn(f"registered lm-eval task directory {path} does not exist and is skipped")
    return dirs


def training_callbacks() -> list[Any]:
    """Instantiated training callbacks (factories are called, instances passed through)."""
    out = []
    for item in _list_registry("training_callbacks"):
        obj = resolve(item)
        if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "on_step_end")):
            try:
                obj = obj()
            except Exception as exc:
                _warn(f"training callback factory {obj!r} failed and is skipped: {type(exc).__name__}: {exc}")
                continue
        out.append(obj)
    return out


def select_layers(model_config: Any, probe_report: Any, requested: Any) -> list[int]:
    """Ask the ``es2_select_layers`` plugins in call order (outside plugins first); the first answer wins."""
    for impl in reversed(_impls("es2_select_layers")):
        try:
            result = impl.function(model_config=model_config, probe_report=probe_report, requested=requested)
        except ES2UsageError:
            raise
        except Exception as exc:
            _warn(f"es2 plugin {impl.plugin_name!r} failed in es2_select_layers and is skipped: "
                  f"{type(exc).__name__}: {exc}")
            continue
        if result is not None:
            return [int(layer) for layer in result]
    raise ES2UsageError(f"no plugin could select layers for layers={requested!r}; use 'auto', 'all', a list or a range like 4-12")


def plugin_report() -> list[dict[str, Any]]:
    """Every plugin with its distribution, version and the names it registers per hook."""
    for kind in NAMED_HOOKS:
        registry(kind)
    for kind in LIST_HOOKS:
        _list_registry(kind)
    infos = _state().infos
    impls = _impls("es2_select_layers")
    for impl in impls:
        if impl.plugin_name in infos:
            infos[impl.plugin_name].registers.setdefault("select_layers", ["(layer selection)"])
    return [
        {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "builtin": info.builtin,
            "module": info.module,
            "registers": {k: sorted(set(v)) for k, v in info.registers.items()},
            "error": info.error,
        }
        for info in infos.values()
    ]
