"""Loading a chat model (and optionally a PEFT adapter) the way every ``es2`` command does it.

Why one loader: safetensors only, ``trust_remote_code`` off by default, offline, and one-line errors a user can
act on (a path that is not a model, an adapter trained for another base) instead of deep tracebacks.
Also: where ``hidden_states[l]`` is produced (:func:`hidden_state_modules`), which probes and attacks need.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from es2_plugin.errors import ES2UsageError

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16", "auto": "auto"}


def default_model_path() -> Path:
    """The built-in toy chat model (built once into the user cache) used when ``--model`` is omitted."""
    try:
        from es2_plugin.toy import ensure_toy_model
    except ImportError as exc:  # pragma: no cover - toy.py is part of the package
        raise ES2UsageError("no --model given and the built-in model is unavailable; pass --model PATH") from exc
    return Path(ensure_toy_model())


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" progress bar on stderr (it would break one-line error output)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _looks_local(text: str) -> bool:
    """A filesystem path rather than a hub id (``org/name``): absolute, relative ``./``, ``~`` or deeper."""
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text


def check_model_dir(path: str | os.PathLike[str]) -> str:
    """The model path to load, after checking it looks like a model (stdlib only: call it before heavy imports)."""
    p = Path(path).expanduser()
    if not p.exists() and _looks_local(str(path)):
        raise ES2UsageError(f"model path {p} does not exist; pass a model directory saved with save_pretrained "
                            f"or a hub id already in the local cache")
    if p.exists():
        if (p / "adapter_config.json").is_file() and not (p / "config.json").is_file():
            raise ES2UsageError(f"{p} is a PEFT adapter, not a model; pass the base model with --model and this "
                                f"directory with --adapter")
        if not p.is_dir() or not (p / "config.json").is_file():
            raise ES2UsageError(f"{p} is not a Hugging Face model directory (no config.json); pass a directory "
                                f"saved with save_pretrained")
        return str(p)
    return str(path)  # a hub id: resolved from the local cache only (HF_HUB_OFFLINE)


def _torch_dtype(dtype: str | Any) -> Any:
    import torch

    if not isinstance(dtype, str):
        return dtype
    name = _DTYPES.get(dtype.lower())
    if name is None:
        raise ES2UsageError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(set(_DTYPES)))}")
    return "auto" if name == "auto" else getattr(torch, name)


def load_tokenizer(path: str | os.PathLike[str], *, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ES2UsageError(f"cannot load a tokenizer from {path}: {str(exc).splitlines()[0]}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model_and_tokenizer(path: str | os.PathLike[str] | None = None, adapter: str | os.PathLike[str] | None = None,
                             *, trust_remote_code: bool = False, dtype: str | Any = "float32",
                             device: str = "cpu", merge: bool = False) -> tuple[Any, Any]:
    """``(model, tokenizer)`` in eval mode; ``path=None`` is the built-in toy model.

    ``adapter`` is a PEFT adapter directory; it is checked against the base (``base_model_name_or_path``
    and tensor shapes) before loading. ``merge=True`` folds it into the weights (faster inference; the
    reference model is then gone). Weights are read from safetensors only.
    """
    path = default_model_path() if path is None else path
    model_path = check_model_dir(path)  # before importing transformers: a wrong path fails in a blink
    if adapter is not None:
        if not Path(adapter).expanduser().is_dir():
            raise ES2UsageError(f"adapter {adapter} does not exist; pass the output directory of es2 train")
        _adapter_config(Path(adapter).expanduser())
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_path, trust_remote_code=trust_remote_code)
    try:
        with _quiet_loading():
            model = AutoModelForCausalLM.from_pretrained(model_path, dtype=_torch_dtype(dtype), use_safetensors=True,
                                                         trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ES2UsageError(f"cannot load a causal LM from {path} (safetensors only): "
                            f"{str(exc).splitlines()[0]}") from exc
    if adapter is not None:
        model = load_adapter(model, adapter, base_path=model_path, merge=merge)
    model.to(device)
    model.eval()
    return model, tokenizer


def _adapter_config(adapter: Path) -> dict:
    cfg_file = adapter / "adapter_config.json"
    if not cfg_file.is_file():
        raise ES2UsageError(f"{adapter} is not a PEFT adapter directory (no adapter_config.json); pass the "
                            f"output directory of es2 train")
    try:
        return json.loads(cfg_file.read_text())
    except json.JSONDecodeError as exc:
        raise ES2UsageError(f"{cfg_file} is not valid JSON ({exc.msg}); re-save the adapter") from exc


def _same_base(a: str, b: str) -> bool:
    if not a or not b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return pa.resolve() == pb.resolve()
    return pa.name == pb.name


def check_adapter_shapes(model: Any, adapter: str | os.PathLike[str]) -> None:
    """Raise when the adapter's LoRA matrices do not fit the model's modules (adapter for another base)."""
    from safetensors import safe_open

    adapter = Path(adapter)
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise ES2UsageError(f"{adapter} has no adapter_model.safetensors (only safetensors adapters are loaded)")
    modules = dict(model.named_modules())
    with safe_open(str(weights), framework="pt") as fh:
        for key in fh.keys():
            if ".lora_A." not in key and ".lora_B." not in key:
                continue
            stem, part = key.split(".lora_A.") if ".lora_A." in key else key.split(".lora_B.")
            name = stem.removeprefix("base_model.model.")
            module = modules.get(name)
            shape = fh.get_slice(key).get_shape()
            if module is None or not hasattr(module, "in_features"):
                raise ES2UsageError(f"adapter {adapter} targets module {name!r}, which this model does not have; "
                                    f"it was trained for another base model")
            want = module.in_features if ".lora_A." in key else module.out_features
            got = shape[1] if ".lora_A." in key else shape[0]
            if want != got:
                raise ES2UsageError(f"adapter {adapter} was trained for another base model: {name} has "
                                    f"{want} features here, the adapter expects {got}; pass its base with --model")


def load_adapter(model: Any, adapter: str | os.PathLike[str], *, base_path: str | None = None,
                 merge: bool = False) -> Any:
    """Attach a PEFT adapter after checking it belongs to this base model."""
    from peft import PeftModel

    adapter = Path(adapter).expanduser()
    if not adapter.is_dir():
        raise ES2UsageError(f"adapter {adapter} does not exist; pass the output directory of es2 train")
    cfg = _adapter_config(adapter)
    check_adapter_shapes(model, adapter)
    declared = str(cfg.get("base_model_name_or_path") or "")
    if base_path is not None and not _same_base(declared, base_path):
        warnings.warn(f"adapter {adapter} declares base {declared}, loading it on {base_path} "
                      f"(shapes match)", stacklevel=2)
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ES2UsageError(f"cannot load adapter {adapter}: {str(exc).splitlines()[0]}") from exc
    return peft_model.merge_and_unload() if merge else peft_model


def base_model(model: Any) -> Any:
    """The underlying transformers model behind a PEFT wrapper (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _first_attr(obj: Any, paths: tuple[str, ...]) -> Any | None:
    """The first dotted attribute path that exists on ``obj`` (architectures name their parts differently)."""
    for path in paths:
        found = obj
        for part in path.split("."):
            found = getattr(found, part, None)
            if found is None:
                break
        if found is not None:
            return found
    return None


def decoder_layers(model: Any) -> Any:
    """The ``ModuleList`` of decoder layers (Llama/Mistral/Qwen/Gemma-style ``model.model.layers``, GPT-2 ``h``)."""
    m = base_model(model)
    layers = _first_attr(m, ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "layers",
                             "model.language_model.layers"))
    if layers is None:
        raise ES2UsageError(f"cannot find the decoder layers of {type(m).__name__}; this architecture is not "
                            f"supported by hidden-state attacks yet")
    return layers


def final_norm(model: Any) -> Any | None:
    return _first_attr(base_model(model), ("model.norm", "model.decoder.final_layer_norm", "transformer.ln_f",
                                           "gpt_neox.final_layer_norm", "model.language_model.norm"))


_MODULE_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def hidden_state_modules(model: Any) -> dict[int, Any]:
    """``{l: module}`` whose forward output *is* ``hidden_states[l]`` (l = 1..L), verified on a tiny input.

    For l < L it is decoder layer l-1. For l = L transformers (4.x and 5.x) returns the state *after* the final
    norm, so the module is the final norm; we check which candidate matches instead of assuming. Cached per
    model (call it before installing hooks that would change its verification pass).
    """
    if model in _MODULE_CACHE:
        return dict(_MODULE_CACHE[model])
    import torch

    layers = list(decoder_layers(model))
    n = len(layers)
    mapping = {i + 1: layers[i] for i in range(n)}
    norm = final_norm(model)
    captured: dict[str, torch.Tensor] = {}

    def grab(name: str):
        def hook(_module, _inputs, output):
            captured[name] = (output[0] if isinstance(output, tuple) else output).detach()
        return hook

    handles = [layers[-1].register_forward_hook(grab("layer"))]
    if norm is not None:
        handles.append(norm.register_forward_hook(grab("norm")))
    try:
        device = next(model.parameters()).device
        ids = torch.tensor([[0, 1]], device=device)
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    last = out.hidden_states[n]
    if "norm" in captured and torch.allclose(last, captured["norm"], atol=1e-5):
        mapping[n] = norm
    elif not torch.allclose(last, captured["layer"], atol=1e-5):
        raise ES2UsageError(f"cannot tell which module produces hidden_states[{n}] in {type(model).__name__}; "
                            f"attack layers 1..{n - 1} only")
    _MODULE_CACHE[model] = mapping
    return dict(mapping)
