"""The attack interface every registered attack implements, and the shared batched greedy generator.

Contract (see ``es2_register_attacks`` in ``hooks/specs.py``): an attack is a class (or factory) with an
``options`` dict (name -> default); ``attack(**options)`` validates them (unknown names raise
:class:`ES2UsageError` listing the known ones) and ``instance(ctx, prompts) -> AttackOutput``.

Why our own greedy loop instead of ``model.generate``: attacks that move hidden states need to know, on every
forward pass, which rows are still generating (a finished row must not add to the perturbation distance) and
whether the pass is the prefill (the paper's distance is measured there). The loop is plain greedy decoding
with a KV cache and left padding, so batched and one-at-a-time runs produce the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from es2_plugin.errors import ES2UsageError

if TYPE_CHECKING:
    import torch

    from es2_plugin.probe import ProbeSet


@dataclass
class AttackContext:
    """What an attack gets besides the prompts: the model, its probes and the generation settings."""

    model: Any
    tokenizer: Any
    probes: ProbeSet | None = None
    max_new_tokens: int = 64
    batch_size: int = 16
    progress: Callable[[int], None] | None = None  # called with the number of prompts done
    system: str | None = None


@dataclass
class AttackOutput:
    """Completions plus, for attacks that move hidden states, how far they pushed.

    ``distance_prompt[i]``: push at prompt i's last token on the prefill pass, summed over layers (paper Fig. 3).
    ``distance_layers[i]``: the same per layer ``{layer: |ε|}``. ``distance_generated[i]``: push summed over
    layers and over every forward pass that produced a token of completion i (prefill included).
    """

    prompts: list[str]
    completions: list[str]
    distance_prompt: list[float] | None = None
    distance_layers: list[dict[int, float]] | None = None
    distance_generated: list[float] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def check_options(name: str, known: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``given``; unknown option names are a usage error listing the known ones."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        listed = ", ".join(f"{k}={v!r}" for k, v in known.items()) or "none"
        raise ES2UsageError(f"unknown option(s) {', '.join(unknown)} for attack {name!r}; known options: {listed}")
    return {**known, **given}


class Attack:
    """Base class for ES2's attacks (outside attacks may subclass it or just follow the same shape)."""

    name: ClassVar[str] = "attack"
    options: ClassVar[dict[str, Any]] = {}
    #: True when the attack reads ``ctx.probes`` (the CLI then loads or fits probes for the attacked model).
    needs_probes: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        self.opts = check_options(self.name, self.options, options)
        self.validate()

    def validate(self) -> None:
        """Check option values (raise :class:`ES2UsageError`); called on construction, before any model loads."""

    def __call__(self, ctx: AttackContext, prompts: Sequence[str]) -> AttackOutput:
        raise NotImplementedError


@dataclass
class StepState:
    """Shared with hooks during generation: which forward pass this is and which rows still generate."""

    step: int = -1  # 0 = the prefill pass, k = the pass producing generated token k+1
    active: Any = None  # bool [batch]


class PushLedger:
    """Per-prompt perturbation sizes of an attack that moves hidden states, filled by its hooks.

    ``record(layer, step, values)`` adds one forward pass's push per batch row: the prefill pass (step 0) gives
    the push at the prompt's last token per layer (the paper's measure); every pass adds to the push summed over
    generated tokens. ``start``/``finish`` are ``generate``'s ``before_batch``/``after_batch`` callbacks.
    """

    def __init__(self, layers: Sequence[int]) -> None:
        self.layers = list(layers)
        self.per_layer: list[dict[int, float]] = []
        self.generated: list[float] = []
        self._batch_layers: list[dict[int, float]] = []
        self._batch_generated: list[float] = []

    def start(self, n_rows: int) -> None:
        self._batch_layers = [{layer: 0.0 for layer in self.layers} for _ in range(n_rows)]
        self._batch_generated = [0.0] * n_rows

    def finish(self, _n_rows: int) -> None:
        self.per_layer.extend(self._batch_layers)
        self.generated.extend(self._batch_generated)

    def record(self, layer: int, step: int, values: Sequence[float]) -> None:
        for row, value in enumerate(values):
            if step == 0:
                self._batch_layers[row][layer] = value
            self._batch_generated[row] += value

    def distances(self) -> dict[str, Any]:
        """The ``distance_*`` fields of :class:`AttackOutput`."""
        return {"distance_prompt": [sum(d.values()) for d in self.per_layer], "distance_layers": self.per_layer,
                "distance_generated": self.generated}


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(x) for x in source)
    return ids


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> Any:
    """Left-padded batch of already-templated texts (no special tokens added: the template has them)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    old = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        return tokenizer(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = old


def _cache_kwarg(model: Any) -> str:
    """``cache`` in transformers ≥ 5.x (``past_key_values`` deprecated there), ``past_key_values`` before."""
    import inspect

    from es2_plugin.modeling import base_model

    params = inspect.signature(base_model(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def greedy_generate(model: Any, attention_mask: torch.Tensor, max_new_tokens: int, stop_ids: set[int], *,
                    input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                    state: StepState | None = None) -> list[list[int]]:
    """Greedy decoding with a KV cache for a left-padded batch; returns the new tokens per row (EOS excluded)."""
    import torch

    state = state if state is not None else StepState()
    device = attention_mask.device
    batch = attention_mask.shape[0]
    mask = attention_mask.clone()
    positions = (mask.long().cumsum(-1) - 1).clamp_min(0)
    active = torch.ones(batch, dtype=torch.bool, device=device)
    out_tokens: list[list[int]] = [[] for _ in range(batch)]
    past = None
    next_input: dict[str, Any] = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
    pad = 0
    cache_kw = _cache_kwarg(model)
    with torch.no_grad():
        for step in range(max_new_tokens):
            state.step, state.active = step, active
            out = model(**next_input, attention_mask=mask, position_ids=positions, use_cache=True,
                        **{cache_kw: past})
            past = getattr(out, "cache", None)
            past = out.past_key_values if past is None else past
            token = out.logits[:, -1, :].argmax(-1)
            for row in torch.nonzero(active).flatten().tolist():
                tok = int(token[row])
                if tok in stop_ids:
                    active[row] = False
                else:
                    out_tokens[row].append(tok)
            if not bool(active.any()) or step == max_new_tokens - 1:
                break
            token = torch.where(active, token, torch.full_like(token, pad))
            next_input = {"input_ids": token[:, None]}
            mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype, device=device)], dim=1)
            positions = positions[:, -1:] + 1
    state.step, state.active = -1, None
    return out_tokens


def generate(ctx: AttackContext, prompts: Sequence[str], *, prefix: str = "", state: StepState | None = None,
             before_batch: Callable[[int], None] | None = None,
             after_batch: Callable[[int], None] | None = None) -> list[str]:
    """Greedy completions of chat-templated ``prompts`` in batches of ``ctx.batch_size`` (left padding).

    ``prefix`` is put at the start of the assistant turn (prefilling) and is part of the returned completion.
    ``before_batch(n_rows)`` / ``after_batch(n_rows)`` let hook-based attacks keep per-batch records.
    """
    from es2_plugin.representations import chat_text

    if not prompts:
        raise ES2UsageError("no prompts to attack; the prompt file is empty")
    model, tok = ctx.model, ctx.tokenizer
    device = next(model.parameters()).device
    stop = eos_ids(model, tok)
    completions: list[str] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), ctx.batch_size):
            chunk = list(prompts[start:start + ctx.batch_size])
            texts = [chat_text(tok, p, system=ctx.system, response=prefix or None) for p in chunk]
            enc = encode_texts(tok, texts).to(device)
            if before_batch is not None:
                before_batch(len(chunk))
            new = greedy_generate(model, enc["attention_mask"], ctx.max_new_tokens, stop, input_ids=enc["input_ids"],
                                  state=state)
            if after_batch is not None:
                after_batch(len(chunk))
            completions.extend(prefix + tok.decode(ids, skip_special_tokens=True) for ids in new)
            if ctx.progress is not None:
                ctx.progress(len(completions))
    finally:
        model.train(was_training)
    return completions


class NoAttack(Attack):
    """``none``: plain greedy generation, the baseline every attack is compared with."""

    name = "none"
    options: ClassVar[dict[str, Any]] = {}

    def __call__(self, ctx: AttackContext, prompts: Sequence[str]) -> AttackOutput:
        return AttackOutput(list(prompts), generate(ctx, prompts), info={"attack": "none"})
