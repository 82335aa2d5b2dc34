"""RepE-style attack: remove the refusal direction (harmful mean − harmless mean) from the residual stream.

At each chosen layer, on every forward pass and every position, the state h becomes
``h − coef·(h·r̂)r̂`` (``mode="project"``: the component along the direction is projected out, coef=1 removes
it fully) or ``h − coef·r`` (``mode="subtract"``: the raw mean difference is subtracted). The class means come
from the probes (``es2 probe`` stores them). The reported distance is ‖Δh‖ at the last position per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from es2_plugin.attacks.base import Attack, AttackContext, AttackOutput, PushLedger, StepState, generate
from es2_plugin.attacks.scav import resolve_layers
from es2_plugin.errors import ES2UsageError


class RepE(Attack):
    """Options: ``mode`` ``"project"`` or ``"subtract"``; ``coef`` strength (default 1.0); ``layers`` ``"auto"``
    (probe accuracy ≥ ``p1``) or a list/range; ``p1`` threshold for ``auto``."""

    name = "repe"
    needs_probes = True
    options: ClassVar[dict[str, Any]] = {"mode": "project", "coef": 1.0, "layers": "auto", "p1": 0.9}

    def validate(self) -> None:
        if self.opts["mode"] not in ("project", "subtract"):
            raise ES2UsageError(f"repe mode must be 'project' or 'subtract', got {self.opts['mode']!r}")
        if not isinstance(self.opts["coef"], (int, float)):
            raise ES2UsageError(f"repe coef must be a number, got {self.opts['coef']!r}")
        if not 0 < float(self.opts["p1"]) <= 1:
            raise ES2UsageError(f"repe p1 must be in (0, 1], got {self.opts['p1']!r}")

    def __call__(self, ctx: AttackContext, prompts: Sequence[str]) -> AttackOutput:
        import torch

        from es2_plugin.modeling import hidden_state_modules

        layers = resolve_layers(ctx, self.opts["layers"], float(self.opts["p1"]), self.name)
        modules = hidden_state_modules(ctx.model)
        device = next(ctx.model.parameters()).device
        coef, mode = float(self.opts["coef"]), self.opts["mode"]
        state = StepState()
        ledger = PushLedger(layers)

        def make_hook(layer: int):
            assert ctx.probes is not None
            r = ctx.probes.direction(layer).to(device=device, dtype=torch.float32)
            unit = r / r.norm().clamp_min(1e-12)

            def hook(_module: Any, _inputs: Any, output: Any) -> Any:
                if state.step < 0:
                    return None
                hidden = output[0] if isinstance(output, tuple) else output
                h = hidden.float()
                delta = -coef * (h @ unit)[..., None] * unit if mode == "project" else (-coef * r).expand_as(h)
                rows = state.active.to(h.dtype)[:, None, None]
                delta = delta * rows
                ledger.record(layer, state.step, delta[:, -1, :].norm(dim=-1).tolist())
                new = (h + delta).to(hidden.dtype)
                return (new, *output[1:]) if isinstance(output, tuple) else new

            return hook

        handles = [modules[layer].register_forward_hook(make_hook(layer)) for layer in layers]
        try:
            completions = generate(ctx, prompts, state=state, before_batch=ledger.start, after_batch=ledger.finish)
        finally:
            for handle in handles:
                handle.remove()
        return AttackOutput(list(prompts), completions, **ledger.distances(),
                            info={"attack": self.name, "mode": mode, "coef": coef, "layers": layers})
