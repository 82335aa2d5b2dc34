"""``es2-hf``: lm-eval's Hugging Face model plus hidden-state capture and an attack mode.

    lm_eval --model es2-hf --model_args pretrained=BASE,peft=ADAPTER --tasks es2_probe
    lm_eval --model es2-hf --model_args pretrained=BASE,attack=scav,p0=0.01 --tasks es2_safety_mini
    lm_eval --model es2-hf --model_args pretrained=BASE,attack=scav,probes=DIR --tasks <any generation task>

Everything ``hf`` accepts works the same. ``attack=NAME`` runs every generation request through that
registered attack (``es2_register_attacks``); the remaining unknown ``key=value`` arguments are the attack's
options (an option it does not know is a one-line error listing the ones it does). Attacks that read probes
(``scav``, ``repe``, or any attack with ``needs_probes = True``) use ``probes=DIR`` (``es2 probe`` output) or,
without it, probes fitted at start-up on the authored prompts (train split) of the *evaluated* model --
the white-box attacker of the SCAV protocol. Under attack, decoding is greedy (the attacks' own loop).

Hidden states: requests carrying ``es2_capture_states`` (the ``es2_probe`` task) are answered with a key to
the last-prompt-token states of every layer instead of text; see :mod:`es2_plugin.lm_eval_model_state`.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from lm_eval.models.huggingface import HFLM

from es2_plugin import lm_eval_model_state as state
from es2_plugin.errors import ES2UsageError
from es2_plugin.lm_eval_model_state import ES2LMEvalError

log = logging.getLogger("es2_plugin.lm_eval")

CAPTURE_KEY = "es2_capture_states"
_HFLM_PARAMS = frozenset(inspect.signature(HFLM.__init__).parameters) - {"self", "kwargs"}
_PROBE_ATTACKS = frozenset({"scav", "repe"})


class _TemplatedTokenizer:
    """The real tokenizer, except that its chat template returns the text unchanged.

    lm-eval's contexts are already chat-templated; ES2's attacks template raw prompts themselves. Handing
    them this proxy makes them take lm-eval's context as it is (a prefill prefix still goes after it).
    """

    chat_template = "{{ messages }}"  # truthy: the attacks check that a template exists

    def __init__(self, tokenizer: Any) -> None:
        object.__setattr__(self, "_tok", tokenizer)

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool = False, **_: Any) -> Any:
        text = "".join(m["content"] for m in messages if m.get("role") != "system")
        return self._tok(text, add_special_tokens=False)["input_ids"] if tokenize else text

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._tok(*args, **kwargs)

    def __len__(self) -> int:
        return len(self._tok)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._tok, name, value)


def split_attack_options(attack: str | None, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(attack options, HF kwargs)``: with an attack, every argument ``hf`` does not name is the attack's."""
    if not attack:
        return {}, kwargs
    options = {k: v for k, v in kwargs.items() if k not in _HFLM_PARAMS}
    rest = {k: v for k, v in kwargs.items() if k in _HFLM_PARAMS}
    return options, rest


def build_attack(name: str, options: dict[str, Any]) -> Any:
    from es2_plugin import plugins

    try:
        factory = plugins.get("attacks", name)
        return factory(**options)
    except ES2UsageError as exc:
        raise ES2LMEvalError(f"--model_args attack={name}: {exc}") from None
    except TypeError as exc:  # an outside attack without option checking
        raise ES2LMEvalError(f"--model_args attack={name}: {exc}") from None


class ES2HFLM(HFLM):
    """lm-eval's ``hf`` model with ``attack=``/``probes=`` arguments and hidden-state capture."""

    def __init__(self, pretrained: Any = None, attack: str | None = None, probes: str | None = None,
                 **kwargs: Any) -> None:
        attack_options, hf_kwargs = split_attack_options(attack, kwargs)
        self._attack_name = str(attack) if attack else None
        self._attack = build_attack(self._attack_name, attack_options) if self._attack_name else None
        if probes and not self._attack_name:
            raise ES2LMEvalError("--model_args probes=DIR is only used with attack=NAME (e.g. attack=scav)")
        super().__init__(pretrained=pretrained, **hf_kwargs)
        self._probes_dir = probes
        self._probes: Any = None
        state.set_active(self)

    # ------------------------------------------------------------------------------------------ requests
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        results: list[str | None] = [None] * len(requests)
        capture = [i for i, r in enumerate(requests) if r.args[1].get(CAPTURE_KEY)]
        normal = [i for i in range(len(requests)) if i not in set(capture)]
        if capture:
            for i, key in zip(capture, self._capture([requests[i].args[0] for i in capture]), strict=True):
                results[i] = key
        if normal:
            chosen = [requests[i] for i in normal]
            texts = self._attacked(chosen) if self._attack is not None else super().generate_until(chosen, disable_tqdm)
            for i, text in zip(normal, texts, strict=True):
                results[i] = text
        return [r if r is not None else "" for r in results]

    # ------------------------------------------------------------------------------------- hidden states
    def _capture(self, contexts: list[str]) -> list[str]:
        """Last-token ``hidden_states[1..L]`` of each (already templated) context, stored; returns keys."""
        import torch

        from es2_plugin.representations import last_token_index

        keys: list[str] = []
        bs = self.batch_size if isinstance(self.batch_size, int) and self.batch_size > 0 else 8
        self.model.eval()
        with torch.no_grad():
            for start in range(0, len(contexts), bs):
                ids, mask = self.tok_batch_encode(contexts[start:start + bs])
                out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                 output_hidden_states=True, use_cache=False)
                idx = last_token_index(mask.to(self.device))
                rows = torch.arange(ids.shape[0], device=self.device)
                hidden = out.hidden_states
                for row in range(ids.shape[0]):
                    keys.append(state.store_states({layer: hidden[layer][rows[row], idx[row]].float().cpu()
                                                    for layer in range(1, len(hidden))}))
        return keys

    # -------------------------------------------------------------------------------------------- attack
    def _attack_probes(self) -> Any:
        if self._probes is not None:
            return self._probes
        needs = getattr(type(self._attack), "needs_probes", self._attack_name in _PROBE_ATTACKS)
        if self._probes_dir:
            from es2_plugin.probe import ProbeSet

            try:
                self._probes = ProbeSet.load(self._probes_dir)
            except ES2UsageError as exc:
                raise ES2LMEvalError(str(exc)) from None
        elif needs:
            from es2_plugin.probe import probe_model
            from es2_plugin.prompts import load_prompts

            log.info("es2-hf: fitting probes for attack %s on the authored prompts (train split)", self._attack_name)
            harmful = [r["prompt"] for r in load_prompts("harmful", "train")]
            harmless = [r["prompt"] for r in load_prompts("harmless", "train")]
            self._probes = probe_model(self.model, self.tokenizer, harmful, harmless,
                                       batch_size=self.batch_size if isinstance(self.batch_size, int) else 16)
            log.info("es2-hf: probe accuracy per layer %s", {k: round(v, 3) for k, v in self._probes.accuracy.items()})
        return self._probes

    def _attacked(self, requests: list[Any]) -> list[str]:
        """Generate through the attack, grouped by generation settings; stop strings are cut afterwards."""
        from es2_plugin.attacks.base import AttackContext

        groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for i, req in enumerate(requests):
            gen = req.args[1]
            until = gen.get("until") or []
            until = (until,) if isinstance(until, str) else tuple(until)
            groups.setdefault((int(gen.get("max_gen_toks", self.max_gen_toks)), until), []).append(i)
            if gen.get("do_sample"):
                log.warning("es2-hf: attack mode decodes greedily; do_sample is ignored")
        out: list[str] = [""] * len(requests)
        bs = self.batch_size if isinstance(self.batch_size, int) and self.batch_size > 0 else 8
        for (max_new, until), idx in groups.items():
            ctx = AttackContext(model=self.model, tokenizer=_TemplatedTokenizer(self.tokenizer),
                                probes=self._attack_probes(), max_new_tokens=max_new, batch_size=bs)
            try:
                result = self._attack(ctx, [requests[i].args[0] for i in idx])
            except ES2UsageError as exc:
                raise ES2LMEvalError(f"attack {self._attack_name}: {exc}") from None
            for i, text in zip(idx, result.completions, strict=True):
                for stop in until:
                    if stop and stop in text:
                        text = text.split(stop, 1)[0]
                out[i] = text
        return out
