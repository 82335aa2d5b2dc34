"""``ES2Config``: every choice of an ES2 run in one dataclass, readable from YAML and written to the output.

Stdlib only (plus PyYAML inside :meth:`ES2Config.from_yaml`), so building a config is cheap. Each field that
is a reconstruction choice (DESIGN.md section 2) is named here and documented in the field comment.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es2_plugin.errors import ES2UsageError

KL_ON = ("both", "harmless")
KL_SPAN = ("prompt", "prompt+response")
REFERENCES = ("auto", "adapter", "frozen", "cached")
POOLINGS = ("last", "mean")
RESPONSES = ("generate", "data", "auto", "none")


@dataclass
class ES2Config:
    """Settings of one ES2 fine-tune. ``L = L_sep + beta * L_KL``.

    Separation: ``objective`` (a registered name) on the last-prompt-token states (``pooling``) at ``layers``,
    each divided by the base model's mean hidden-state norm at that layer (``layer_norms``, measured once).
    KL: ``T^2 * KL(p_base || p_theta)`` on ``kl_on`` classes over ``kl_span`` positions; the first
    ``first_response_tokens`` positions that predict the answer (starting at the last prompt token, the very
    position the separation moves) weigh ``first_response_weight`` times a normal position.
    """

    # --- method
    objective: str = "centroid-margin"
    objective_options: dict[str, Any] = field(default_factory=lambda: {"margin": 4.0})
    layers: Any = "auto"  # "auto" | "all" | [3, 5] | "4-12"
    p1: float = 0.9  # probe accuracy that makes a layer "auto"-selected (the SCAV threshold)
    beta: float = 1.0
    temperature: float = 1.0
    kl_on: str = "both"
    kl_span: str = "prompt+response"
    first_response_tokens: int = 4
    first_response_weight: float = 10.0
    responses: str = "generate"  # own greedy answer (cached) | the data's | data when given else own | none
    max_response_tokens: int = 32
    reference: str = "auto"  # adapter (LoRA off, no_grad) | frozen copy | cached top-k | auto
    cached_topk: int = 64
    pooling: str = "last"
    layer_norms: dict[int, float] | None = None  # filled once from the base model
    # --- optimisation
    seed: int = 0
    full_finetune: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: Any = "all-linear"
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    steps: int = 150
    batch_size: int = 16  # per class per device: every batch holds this many harmful AND harmless prompts
    gradient_accumulation_steps: int = 1
    max_length: int = 256
    save_steps: int = 50
    logging_steps: int = 10
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> ES2Config:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ES2UsageError(message)

        def finite(x: Any) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

        need(finite(self.beta) and self.beta >= 0, f"beta must be a number >= 0, got {self.beta!r}")
        need(finite(self.temperature) and self.temperature > 0,
             f"temperature must be > 0, got {self.temperature!r}")
        need(finite(self.p1) and 0 < self.p1 <= 1, f"p1 must be in (0, 1], got {self.p1!r}")
        need(finite(self.learning_rate) and self.learning_rate > 0,
             f"learning_rate must be > 0, got {self.learning_rate!r}")
        for name in ("batch_size", "steps", "max_length", "gradient_accumulation_steps", "save_steps",
                     "logging_steps", "lora_r", "cached_topk"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{name} must be a positive integer, got {value!r}")
        for name in ("first_response_tokens", "max_response_tokens", "warmup_steps", "seed"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value >= 0,
                 f"{name} must be an integer >= 0, got {value!r}")
        need(finite(self.first_response_weight) and self.first_response_weight > 0,
             f"first_response_weight must be > 0, got {self.first_response_weight!r}")
        for name, allowed in (("kl_on", KL_ON), ("kl_span", KL_SPAN), ("reference", REFERENCES),
                              ("pooling", POOLINGS), ("responses", RESPONSES)):
            value = getattr(self, name)
            need(value in allowed, f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        need(isinstance(self.objective_options, dict),
             f"objective_options must be a mapping like {{margin: 4.0}}, got {self.objective_options!r}")
        margin = self.objective_options.get("margin", 1.0)
        need(finite(margin) and margin > 0, f"objective_options.margin must be > 0, got {margin!r}")
        need(not (self.reference == "adapter" and self.full_finetune),
             "reference 'adapter' needs LoRA; with full fine-tuning use reference 'frozen' or 'cached'")
        if self.layer_norms is not None:
            self.layer_norms = {int(k): float(v) for k, v in self.layer_norms.items()}
        return self

    def resolved_reference(self) -> str:
        if self.reference != "auto":
            return self.reference
        return "frozen" if self.full_finetune else "adapter"

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["layer_norms"] is not None:
            data["layer_norms"] = {str(k): v for k, v in data["layer_norms"].items()}
        return data

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> ES2Config:
        if not isinstance(data, dict):
            raise ES2UsageError(f"{source} must be a mapping of ES2 settings, got {type(data).__name__}")
        names = cls.field_names()
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
                raise ES2UsageError(f"unknown key {key!r} in {source}{hint}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> ES2Config:
        """Read a YAML mapping (optionally nested under an ``es2:`` key, as in an axolotl config)."""
        import yaml

        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ES2UsageError(f"config file {p} does not exist; check the --config path") from None
        except UnicodeDecodeError:
            raise ES2UsageError(f"config file {p} is not UTF-8 text; save it as UTF-8 YAML") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ES2UsageError(f"config file {p} is not valid YAML{where}; fix the syntax") from None
        if data is None:
            data = {}
        if isinstance(data, dict) and isinstance(data.get("es2"), dict):
            data = data["es2"]
        return cls.from_dict(data, source=str(p))

    def replace(self, **changes: Any) -> ES2Config:
        """A copy with ``changes`` applied (``None`` values are ignored, so unset CLI flags keep the YAML)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
