"""Let plain ``lm_eval --tasks es2_safety`` and ``--model es2-hf`` work without flags (lm-eval 0.4.x).

lm-eval has no entry-point discovery for tasks or models yet. ``es2_plugin_autoload.pth`` (installed beside
the package) loads this file at interpreter start -- by path, so ``es2_plugin/__init__`` and its imports are
not paid for -- and :func:`install` puts one tiny finder at the front of ``sys.meta_path``. The finder does
nothing until lm-eval itself is imported; then, right after the real module has executed:

* ``lm_eval.tasks.manager`` / ``lm_eval.tasks``: ``TaskManager.__init__`` is wrapped so that every
  directory registered through ``es2_register_tasks`` is searched *before* the user's ``--include_path``
  (lm-eval lets later paths override earlier ones, so the user's tasks win a name clash);
* ``lm_eval.models``: ``es2-hf`` is registered as a lazy ``"module:Class"`` placeholder -- never earlier,
  because an entry in lm-eval's model registry before ``lm_eval.models`` runs would hide its built-ins.

Stdlib only; never raises; opt out with ``ES2_NO_AUTOLOAD=1``. Python >= 3.15 runs :func:`install` from
``es2_plugin_autoload.start`` (PEP 829) instead of the ``.pth`` import line.
"""


import os
import sys

OPT_OUT_ENV = "ES2_NO_AUTOLOAD"
MODEL_NAME = "es2-hf"
MODEL_TARGET = "es2_plugin.lm_eval_model:ES2HFLM"
_MARK = "_es2_autoload"

#: The one line of ``es2_plugin_autoload.pth``: find the installed package without importing it, then load
#: this file by path as ``_es2_plugin_autoload`` and call install(). Kept here so a test can compare.
PTH_LINE = (
    "import os, sys; exec(\"try:\\n if os.environ.get('ES2_NO_AUTOLOAD', '').strip().lower() in "
    "('', '0', 'false', 'no', 'off'):\\n  from importlib.machinery import SourceFileLoader as L\\n"
    "  s = next(filter(None, (getattr(f, 'find_spec', lambda *a: None)('es2_plugin', None) for f in "
    "sys.meta_path)), None)\\n  if s and s.submodule_search_locations:\\n   p = "
    "os.path.join(list(s.submodule_search_locations)[0], '_autoload.py')\\n   m = type(sys)"
    "('_es2_plugin_autoload'); m.__file__ = p; sys.modules[m.__name__] = m; "
    "L(m.__name__, p).exec_module(m); m.install()\\nexcept Exception:\\n pass\")\n"
)


def disabled() -> bool:
    return os.environ.get(OPT_OUT_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def _safe(fn):  # noqa: ANN001, ANN202 - keep the shim free of typing imports
    def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return fn(*args, **kwargs)
        except Exception:  # the shim must never break the user's interpreter or lm-eval
            return None

    return run


def es2_task_dirs() -> list[str]:
    """Every task directory registered through ``es2_register_tasks`` (ours first), as strings."""
    try:
        from es2_plugin.plugins import task_dirs

        dirs = [str(d) for d in task_dirs()]
        if dirs:
            return dirs
    except Exception:
        pass
    from importlib.util import find_spec

    spec = find_spec("es2_plugin.tasks")
    return list(spec.submodule_search_locations or []) if spec else []


def _merge_include_path(user: object) -> object:
    ours = es2_task_dirs()
    if not ours:
        return user
    if user is None or user == "" or user == []:
        user_list: list = []
    elif isinstance(user, (list, tuple)):
        user_list = list(user)
    else:
        user_list = [user]
    user_set = {os.path.realpath(str(p)) for p in user_list}
    first = [d for d in ours if os.path.realpath(d) not in user_set]
    return first + user_list  # lm-eval: later include paths override earlier ones, so the user wins


def patch_task_manager(module: object) -> None:
    """Wrap ``TaskManager.__init__`` (idempotent) so ES2's task directories are always searched."""
    cls = getattr(module, "TaskManager", None)
    if cls is None or getattr(cls.__init__, _MARK, False):
        return
    original = cls.__init__

    def __init__(self, *args, **kwargs):  # noqa: N807, ANN001, ANN002, ANN003, ANN202
        if not disabled():
            try:
                if len(args) >= 2:  # (verbosity, include_path, ...)
                    args = (args[0], _merge_include_path(args[1]), *args[2:])
                else:
                    kwargs["include_path"] = _merge_include_path(kwargs.get("include_path"))
            except Exception:
                pass
        original(self, *args, **kwargs)

    __init__.__wrapped__ = original
    __init__.__doc__ = original.__doc__
    setattr(__init__, _MARK, True)
    cls.__init__ = __init__


def register_model(module: object = None) -> None:
    """Register ``es2-hf`` lazily in lm-eval's model registry (after ``lm_eval.models`` ran)."""
    from lm_eval.api import registry

    model_registry = getattr(registry, "model_registry", None)
    if model_registry is not None:
        if MODEL_NAME not in model_registry:
            model_registry.register(MODEL_NAME, target=MODEL_TARGET)
        return
    # older lm-eval (< 0.4.10): a plain dict of classes; import ours now (lm-eval is loading anyway)
    legacy = getattr(registry, "MODEL_REGISTRY", None)
    if isinstance(legacy, dict) and MODEL_NAME not in legacy:
        from es2_plugin.lm_eval_model import ES2HFLM

        legacy[MODEL_NAME] = ES2HFLM


#: module name -> what to run right after it has executed
AFTER_IMPORT = {
    "lm_eval.tasks.manager": patch_task_manager,
    "lm_eval.tasks": patch_task_manager,
    "lm_eval.models": register_model,
}


class _Finder:
    """A meta-path finder that only watches lm-eval modules and hooks their loaders; imports nothing."""

    _es2_autoload = True

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        hook = AFTER_IMPORT.get(fullname)
        if hook is None or disabled():
            return None
        spec = None
        for finder in sys.meta_path:
            if getattr(finder, _MARK, False):
                continue
            find = getattr(finder, "find_spec", None)
            if find is None:
                continue
            try:
                spec = find(fullname, path, target)
            except Exception:
                spec = None
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module):  # noqa: ANN001, ANN202
            original(module)
            _safe(hook)(module)

        try:
            loader.exec_module = exec_module
        except Exception:
            pass
        return spec

    def invalidate_caches(self) -> None:
        pass


def _already_loaded() -> None:
    """If lm-eval was imported before install() (e.g. called by hand), patch it now."""
    for name, hook in AFTER_IMPORT.items():
        module = sys.modules.get(name)
        if module is not None:
            _safe(hook)(module)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once). Never raises."""
    try:
        if disabled() or any(getattr(f, _MARK, False) for f in sys.meta_path):
            return
        sys.meta_path.insert(0, _Finder())
        _already_loaded()
    except Exception:
        pass
