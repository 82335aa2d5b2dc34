"""ES2 training for Hugging Face ``Trainer`` and TRL ``SFTTrainer``: a mixin that owns the loss.

``L = L_sep + beta * L_KL`` (see :mod:`es2_plugin.objectives` and :class:`es2_plugin.config.ES2Config`).
HF ``Trainer`` cannot express this through ``compute_loss_func`` or callbacks (neither sees the inputs and the
reference model together), so :class:`ES2Mixin` overrides ``compute_loss``. Turning an existing script into
ES2 training means: swap the trainer class, pass ``es2_config=``, feed :class:`PairedDataset` through
:class:`ES2Collator` and set ``remove_unused_columns=False``.

Every batch holds ``batch_size`` harmful *and* ``batch_size`` harmless rows (one dataset item is a pair), so
class means exist in every step. Under DDP the separation loss uses class means over all ranks: the states are
all-gathered (other ranks' parts without gradient, the local part with it) and the loss is re-weighted so the
DDP-averaged gradient equals the gradient of the global loss.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from transformers import Trainer

from es2_plugin import objectives as O
from es2_plugin import plugins
from es2_plugin.config import ES2Config
from es2_plugin.errors import ES2UsageError
from es2_plugin.representations import chat_text, pooled_states


class ES2NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf; training stops and the last good checkpoint is kept."""

    def __init__(self, step: int, what: str) -> None:
        super().__init__(f"{what} is not finite at step {step}")
        self.step = step
        self.what = what


# ---------------------------------------------------------------------------------------------- examples
def generate_responses(model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int = 32,
                       batch_size: int = 16, progress: Any = None) -> list[list[int]]:
    """The base model's own greedy answers as token ids (ending with EOS when it stopped), generated once."""
    from es2_plugin.representations import encode_chat

    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    out: list[list[int]] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            enc = encode_chat(tokenizer, list(prompts[start:start + batch_size]))
            device = next(model.parameters()).device
            with torch.no_grad():
                gen = model.generate(**{k: v.to(device) for k, v in enc.items()}, max_new_tokens=max_new_tokens,
                                     do_sample=False, pad_token_id=pad, eos_token_id=eos)
            for row in gen[:, enc["input_ids"].shape[1]:].tolist():
                ids: list[int] = []
                for tok in row:
                    ids.append(tok)
                    if tok == eos:
                        break
                out.append(ids)
            if progress is not None:
                progress(min(start + batch_size, len(prompts)))
    finally:
        model.train(was_training)
    return out


def encode_example(tokenizer: Any, prompt: str, response: str | list[int] | None, max_length: int) -> dict:
    """Token ids of the chat-templated prompt (+ response), with ``prompt_len`` marking where the answer starts.

    Long prompts lose their *beginning* (the generation prompt at the end is where the representation is read);
    the response is cut to what still fits in ``max_length``.
    """
    prompt_ids = tokenizer(chat_text(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    if isinstance(response, str):
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            response_ids = response_ids + [tokenizer.eos_token_id]
    else:
        response_ids = list(response or [])
    prompt_ids = prompt_ids[-max_length:]
    response_ids = response_ids[: max(0, max_length - len(prompt_ids))]
    return {"input_ids": prompt_ids + response_ids, "prompt_len": len(prompt_ids)}


def build_examples(model: Any, tokenizer: Any, records: Sequence[dict], config: ES2Config, *,
                   progress: Any = None) -> list[dict]:
    """Encode records per ``config.responses`` / ``config.kl_span`` (own greedy answers generated here)."""
    use_response = config.kl_span == "prompt+response" and config.responses != "none"
    responses: list[Any] = [None] * len(records)
    if use_response:
        if config.responses in ("data", "auto"):
            responses = [r.get("response") for r in records]
            if config.responses == "data" and any(r is None for r in responses):
                missing = sum(r is None for r in responses)
                raise ES2UsageError(f"responses: data, but {missing} prompts have no response; add a response "
                                    f"column or use responses: generate")
        todo = [i for i, r in enumerate(responses) if r is None]
        if todo and config.responses in ("generate", "auto"):
            generated = generate_responses(model, tokenizer, [records[i]["prompt"] for i in todo],
                                           max_new_tokens=config.max_response_tokens, progress=progress)
            for i, ids in zip(todo, generated, strict=True):
                responses[i] = ids
    return [encode_example(tokenizer, r["prompt"], resp, config.max_length)
            for r, resp in zip(records, responses, strict=True)]


class PairedDataset(torch.utils.data.Dataset):
    """Item ``i`` is a (harmful, harmless) pair, so any batch of ``b`` items holds ``b`` of each class.

    Length is the larger class; the smaller one is cycled.
    """

    def __init__(self, harmful: Sequence[dict], harmless: Sequence[dict]) -> None:
        if not harmful or not harmless:
            which = "harmful" if not harmful else "harmless"
            raise ES2UsageError(f"ES2 needs both prompt classes; the {which} set is empty")
        self.harmful, self.harmless = list(harmful), list(harmless)

    def __len__(self) -> int:
        return max(len(self.harmful), len(self.harmless))

    def __getitem__(self, i: int) -> dict:
        return {"harmful": self.harmful[i % len(self.harmful)], "harmless": self.harmless[i % len(self.harmless)]}

    def to_hf(self) -> Any:
        """The same pairs as a ``datasets.Dataset`` (TRL's ``SFTTrainer`` accepts nothing else).

        Token ids only: the ``cached`` reference's tensors stay with the torch dataset.
        """
        import datasets

        keep = ("input_ids", "prompt_len")
        rows = [{cls: {k: item[cls][k] for k in keep} for cls in ("harmful", "harmless")}
                for item in (self[i] for i in range(len(self)))]
        return datasets.Dataset.from_list(rows)


class ES2Collator:
    """Pads a list of pairs into one right-padded batch: harmful rows first, then harmless rows.

    Adds ``is_harmful``, ``prompt_mask`` (1 up to the last prompt token, for the representation) and
    ``kl_weights`` (0 where no KL applies; ``first_response_weight`` on the first ``first_response_tokens``
    positions that predict the answer, starting at the last prompt token; 1 elsewhere), plus cached reference
    top-k tensors when the examples carry them.
    """

    def __init__(self, pad_token_id: int, config: ES2Config) -> None:
        self.pad = int(pad_token_id)
        self.config = config

    def __call__(self, pairs: Sequence[dict]) -> dict[str, torch.Tensor]:
        rows = [p["harmful"] for p in pairs] + [p["harmless"] for p in pairs]
        n, width = len(rows), max(len(r["input_ids"]) for r in rows)
        ids = torch.full((n, width), self.pad, dtype=torch.long)
        attn = torch.zeros(n, width, dtype=torch.long)
        prompt_mask = torch.zeros(n, width, dtype=torch.long)
        weights = torch.zeros(n, width)
        k, w_first = self.config.first_response_tokens, self.config.first_response_weight
        for i, row in enumerate(rows):
            length, plen = len(row["input_ids"]), row["prompt_len"]
            ids[i, :length] = torch.tensor(row["input_ids"])
            attn[i, :length] = 1
            prompt_mask[i, :plen] = 1
            harmful = i < len(pairs)
            if harmful and self.config.kl_on == "harmless":
                continue
            weights[i, :length] = 1.0
            weights[i, plen - 1:min(length, plen - 1 + k)] = w_first
        batch = {"input_ids": ids, "attention_mask": attn, "prompt_mask": prompt_mask, "kl_weights": weights,
                 "is_harmful": torch.arange(n) < len(pairs)}
        if "ref_logp" in rows[0]:
            topk = rows[0]["ref_logp"].shape[-1]
            logp = torch.zeros(n, width, topk)
            idx = torch.zeros(n, width, topk, dtype=torch.long)
            for i, row in enumerate(rows):
                length = row["ref_logp"].shape[0]
                logp[i, :length], idx[i, :length] = row["ref_logp"], row["ref_idx"]
            batch["ref_logp"], batch["ref_idx"] = logp, idx
        return batch


def cache_reference(model: Any, examples: list[dict], *, topk: int, temperature: float, batch_size: int = 16,
                    progress: Any = None) -> None:
    """Store the base model's top-``k`` log-probabilities per position in each example (``reference: cached``)."""
    was_training = model.training
    model.eval()
    pad = 0
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            width = max(len(e["input_ids"]) for e in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attn = torch.zeros_like(ids)
            for i, e in enumerate(chunk):
                ids[i, :len(e["input_ids"])] = torch.tensor(e["input_ids"])
                attn[i, :len(e["input_ids"])] = 1
            device = next(model.parameters()).device
            with torch.no_grad():
                logits = model(input_ids=ids.to(device), attention_mask=attn.to(device), use_cache=False).logits
            values, indices = O.reference_topk(logits, topk, temperature)
            for i, e in enumerate(chunk):
                length = len(e["input_ids"])
                e["ref_logp"] = values[i, :length].cpu()  # float32: fp16 rounding alone was 3% of a small KL
                e["ref_idx"] = indices[i, :length].cpu().to(torch.int32)
            if progress is not None:
                progress(min(start + batch_size, len(examples)))
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------------- distributed
def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_local_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x [n_r, d]`` from every rank; only this rank's rows keep their gradient."""
    import torch.distributed as dist

    rank, world = _world()
    if world == 1:
        return x
    size = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, *x.shape[1:], dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x.detach()
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    parts = [p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)]
    parts[rank] = x
    return torch.cat(parts)


# ---------------------------------------------------------------------------------------------- trainers
class ES2Mixin:
    """Overrides ``compute_loss`` with ``L_sep + beta * L_KL``; put it before the HF trainer class in the bases.

    Extra constructor arguments: ``es2_config`` (ES2Config with ``layers`` resolved to a list and
    ``layer_norms`` filled, see :func:`measure_base`), optional ``ref_model`` (frozen reference for full
    fine-tuning; made by deep copy when ``reference`` is ``frozen`` and none is given).
    """

    def __init__(self, *args: Any, es2_config: ES2Config, ref_model: Any = None, **kwargs: Any) -> None:
        if not isinstance(es2_config.layers, (list, tuple)) or not es2_config.layer_norms:
            raise ES2UsageError("es2_config needs explicit layers and layer_norms; call es2_plugin.trainer."
                                "measure_base(model, tokenizer, harmful, harmless, config) first")
        missing = [layer for layer in es2_config.layers if layer not in es2_config.layer_norms]
        if missing:
            raise ES2UsageError(f"es2_config.layer_norms has no norm for layers {missing}; rerun measure_base")
        kwargs["callbacks"] = list(kwargs.get("callbacks") or []) + plugins.training_callbacks()
        super().__init__(*args, **kwargs)
        self.es2_config = es2_config
        self.es2_objective = plugins.get("objectives", es2_config.objective)
        self.es2_reference = es2_config.resolved_reference()
        if self.es2_reference == "adapter" and not hasattr(self._unwrapped(), "disable_adapter"):
            raise ES2UsageError("reference 'adapter' needs a PEFT (LoRA) model; wrap the model with peft or use "
                                "reference 'frozen' / 'cached'")
        if self.es2_reference == "frozen" and ref_model is None:
            ref_model = copy.deepcopy(self._unwrapped())
        if ref_model is not None:
            ref_model.eval().requires_grad_(False)
        self.es2_ref_model = ref_model
        self.model_accepts_loss_kwargs = False  # our loss is a per-batch mean: let the Trainer divide by GA steps
        self.loss_is_scaled_for_ga = False
        self._es2_logs: dict[str, list[float]] = defaultdict(list)
        self.es2_last_good_step = 0

    def _unwrapped(self) -> Any:
        model = self.model
        while hasattr(model, "module") and not hasattr(model, "disable_adapter"):
            model = model.module
        return model

    def _reference_logits(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if self.es2_reference == "cached":
            return None
        model_inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"],
                        "use_cache": False}
        with torch.no_grad():
            if self.es2_reference == "frozen":
                return self.es2_ref_model(**model_inputs).logits
            peft_model = self._unwrapped()
            was_training = peft_model.training
            peft_model.eval()  # no dropout in the reference
            try:
                with peft_model.disable_adapter():
                    return peft_model(**model_inputs).logits
            finally:
                peft_model.train(was_training)

    def es2_separation(self, states: dict[int, torch.Tensor], is_harmful: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Mean over layers of the objective on normalised states (class means across DDP ranks)."""
        cfg = self.es2_config
        _rank, world = _world()
        losses, margins = [], {}
        for layer in cfg.layers:
            s = O.normalise(states[layer].float(), cfg.layer_norms[layer])
            h, b = gather_with_local_grad(s[is_harmful]), gather_with_local_grad(s[~is_harmful])
            losses.append(self.es2_objective(h, b, **cfg.objective_options))
            margins[layer] = float(O.centroid_distance(h.detach(), b.detach()))
        sep = torch.stack(losses).mean()
        if world > 1:  # value unchanged; gradient x world so DDP's average is the global loss's gradient
            sep = world * sep - (world - 1) * sep.detach()
        return sep, margins

    def compute_loss(self, model: Any, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        cfg = self.es2_config
        inputs = dict(inputs)
        is_harmful = inputs.pop("is_harmful").bool()
        prompt_mask = inputs.pop("prompt_mask")
        kl_weights = inputs.pop("kl_weights")
        ref_logp, ref_idx = inputs.pop("ref_logp", None), inputs.pop("ref_idx", None)
        inputs.pop("labels", None)
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                        output_hidden_states=True, use_cache=False)
        states = pooled_states(outputs.hidden_states, prompt_mask, cfg.layers, cfg.pooling)  # type: ignore[arg-type]
        sep, margins = self.es2_separation(states, is_harmful)
        mask = kl_weights > 0
        real = inputs["attention_mask"].bool()  # softmaxes only over real tokens: padding costs nothing
        per_position = outputs.logits.new_zeros(real.shape, dtype=torch.float32)
        if self.es2_reference == "cached":
            if ref_logp is None:
                raise ES2UsageError("reference 'cached' needs examples prepared with cache_reference()")
            per_position[real] = O.kl_per_position_topk(outputs.logits[real], ref_logp[real], ref_idx[real],
                                                        cfg.temperature)
        else:
            ref = self._reference_logits(inputs)
            per_position[real] = O.kl_per_position(outputs.logits[real], ref[real], cfg.temperature)
        kl = O.weighted_mean(per_position, mask, kl_weights)
        with torch.no_grad():  # the plain harmless KL (all answer and prompt positions, unweighted), for logs
            ok = ~is_harmful
            kl_harmless = O.weighted_mean(per_position[ok], inputs["attention_mask"][ok], None)
        loss = sep + cfg.beta * kl
        step = int(getattr(self.state, "global_step", 0))
        if not math.isfinite(float(loss.detach())):
            raise ES2NonFiniteLoss(step + 1, "the KL term" if not math.isfinite(float(kl.detach()))
                                   else "the separation loss")
        self._es2_logs["es2_sep"].append(float(sep.detach()))
        self._es2_logs["es2_kl"].append(float(kl.detach()))
        self._es2_logs["es2_kl_harmless"].append(float(kl_harmless))
        for layer, m in margins.items():
            self._es2_logs[f"es2_margin_L{layer}"].append(m)
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        for key, values in self._es2_logs.items():
            if values:
                logs[key] = round(sum(values) / len(values), 6)
        self._es2_logs.clear()
        super().log(logs, *args, **kwargs)  # type: ignore[misc]


class ES2Trainer(ES2Mixin, Trainer):
    """``transformers.Trainer`` with the ES2 loss: ``ES2Trainer(model=peft_model, args=..., es2_config=cfg,
    train_dataset=PairedDataset(...), data_collator=ES2Collator(pad_id, cfg))``."""


def es2_sft_trainer_cls() -> type:
    """``ES2Mixin`` on TRL's ``SFTTrainer`` (imported only here, TRL is an optional extra)."""
    try:
        from trl import SFTTrainer
    except ImportError:
        raise ES2UsageError("ES2SFTTrainer needs TRL; pip install 'es2-plugin[trl]'") from None

    class ES2SFTTrainer(ES2Mixin, SFTTrainer):
        """TRL ``SFTTrainer`` with the ES2 loss. Pass ``SFTConfig(..., remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True})`` with a :class:`PairedDataset` and :class:`ES2Collator`."""

    return ES2SFTTrainer


def __getattr__(name: str) -> Any:
    if name == "ES2SFTTrainer":
        return es2_sft_trainer_cls()
    raise AttributeError(name)


# ---------------------------------------------------------------------------------------------- base stats
def measure_base(model: Any, tokenizer: Any, harmful_prompts: Sequence[str], harmless_prompts: Sequence[str],
                 config: ES2Config, *, max_probe_prompts: int = 256, progress: Any = None) -> tuple[ES2Config, dict]:
    """Probe the *base* model once: per-layer norms (for scale-free losses), probe accuracy, chosen layers.

    Returns ``(config with layers and layer_norms filled, probe summary)``. Layer choice goes through the
    ``es2_select_layers`` hook (``auto`` = layers whose held-out probe accuracy reaches ``p1``).
    """
    from es2_plugin.probe import probe_model

    gen = torch.Generator().manual_seed(config.seed)

    def subset(prompts: Sequence[str]) -> list[str]:
        if len(prompts) <= max_probe_prompts:
            return list(prompts)
        idx = torch.randperm(len(prompts), generator=gen)[:max_probe_prompts].tolist()
        return [prompts[i] for i in sorted(idx)]

    probes = probe_model(model, tokenizer, subset(harmful_prompts), subset(harmless_prompts),
                         pooling=config.pooling, seed=config.seed, progress=progress)
    report = {"accuracy": probes.accuracy, "p1": config.p1}
    layers = plugins.select_layers(model.config, report, config.layers)
    norms = {layer: float(probes.norm[layer]) for layer in probes.layers}
    summary = {"accuracy": probes.accuracy, "separation": probes.separation, "norm": norms, "p1": config.p1,
               "requested_layers": config.layers}
    return config.replace(layers=layers, layer_norms=norms), summary


def measure_margins(model: Any, tokenizer: Any, harmful_prompts: Sequence[str], harmless_prompts: Sequence[str],
                    config: ES2Config) -> dict[int, float]:
    """Normalised centroid distance per chosen layer, ``||mu_H - mu_B|| / n_l`` with the *base* norms."""
    from es2_plugin.representations import collect_states

    h = collect_states(model, tokenizer, list(harmful_prompts), layers=config.layers, pooling=config.pooling)
    b = collect_states(model, tokenizer, list(harmless_prompts), layers=config.layers, pooling=config.pooling)
    return {layer: float(O.centroid_distance(h[layer], b[layer])) / config.layer_norms[layer]
            for layer in config.layers}


def file_sha256(paths: Sequence[Any]) -> str:
    """One sha256 over the given files in order (the base model's identity in ``es2_config.json``)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
