"""axolotl plugin: ES2 training from an axolotl YAML.

    plugins:
      - es2_plugin.integrations.axolotl.ES2AxolotlPlugin
    es2:
      harmful: es2:authored-harmful:train      # any ES2 prompt source (file, hf:..., es2:...)
      harmless: es2:authored-harmless:train
      beta: 1.0                                 # any other ES2Config key
      layers: auto

axolotl loads the model, applies LoRA and builds its trainer with the class returned by
:meth:`ES2AxolotlPlugin.get_trainer_cls`; that class probes the base model (adapter disabled), replaces
axolotl's dataset with ES2's paired harmful/harmless batches, and trains ``L_sep + beta * L_KL``.
axolotl's optimizer, scheduler, precision, checkpointing and distributed settings are used as configured.
"""

from __future__ import annotations

from typing import Any

try:  # axolotl is optional; without it the classes still import for documentation and tests
    from axolotl.integrations.base import BasePlugin
except ImportError:  # pragma: no cover - exercised when axolotl is absent
    BasePlugin = object  # type: ignore[misc,assignment]

DATA_KEYS = ("harmful", "harmless", "harmful_column", "harmless_column")


def _pydantic_args() -> Any:
    from pydantic import BaseModel

    class ES2AxolotlArgs(BaseModel):
        """The ``es2:`` section of an axolotl config (validated again by ES2Config)."""

        es2: dict[str, Any] | None = None

    return ES2AxolotlArgs


def __getattr__(name: str) -> Any:
    if name == "ES2AxolotlArgs":
        return _pydantic_args()
    raise AttributeError(name)


def _section(cfg: Any) -> dict[str, Any] | None:
    section = cfg.get("es2") if hasattr(cfg, "get") else getattr(cfg, "es2", None)
    return dict(section) if section else None


def make_trainer_cls(section: dict[str, Any], base: type | None = None) -> type:
    """An ES2 trainer class on top of axolotl's ``AxolotlTrainer`` (or HF ``Trainer`` when given)."""
    from es2_plugin.config import ES2Config
    from es2_plugin.trainer import ES2Mixin

    if base is None:
        from axolotl.core.trainers.base import AxolotlTrainer as base  # type: ignore[no-redef]

    es2_options = {k: v for k, v in section.items() if k not in DATA_KEYS}
    config = ES2Config.from_dict(es2_options, source="the es2: section of the axolotl config")
    harmful = section.get("harmful", "es2:authored-harmful:train")
    harmless = section.get("harmless", "es2:authored-harmless:train")

    class AxolotlES2Trainer(ES2Mixin, base):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            from es2_plugin.data import load_records
            from es2_plugin.trainer import ES2Collator, PairedDataset, build_examples, measure_base

            model = kwargs.get("model", args[0] if args else None)
            tok = kwargs.get("processing_class") or kwargs.get("tokenizer")
            h_rec = load_records(harmful, section.get("harmful_column"))
            b_rec = load_records(harmless, section.get("harmless_column"))
            ctx = model.disable_adapter() if hasattr(model, "disable_adapter") else _null()
            with ctx:
                cfg, _ = measure_base(model, tok, [r["prompt"] for r in h_rec], [r["prompt"] for r in b_rec], config)
                h_ex, b_ex = build_examples(model, tok, h_rec, cfg), build_examples(model, tok, b_rec, cfg)
            kwargs["train_dataset"] = PairedDataset(h_ex, b_ex).to_hf()  # axolotl reads column_names
            kwargs["data_collator"] = ES2Collator(tok.pad_token_id, cfg)
            kwargs["eval_dataset"] = None
            if "args" in kwargs:
                kwargs["args"].remove_unused_columns = False
            super().__init__(*args, es2_config=cfg, **kwargs)

    return AxolotlES2Trainer


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class ES2AxolotlPlugin(BasePlugin):  # type: ignore[misc,valid-type]
    """Enable with ``plugins: [es2_plugin.integrations.axolotl.ES2AxolotlPlugin]`` and an ``es2:`` section."""

    def get_input_args(self) -> str:
        return "es2_plugin.integrations.axolotl.ES2AxolotlArgs"

    def get_trainer_cls(self, cfg: Any) -> type | None:
        section = _section(cfg)
        if section is None:
            return None
        return make_trainer_cls(section)
