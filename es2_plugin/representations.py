"""Where ES2 reads a prompt's representation: one function used by training, probes, attacks and lm-eval.

r_l(x) is ``hidden_states[l]`` (the output of decoder layer l; index 0 is the embedding output) at the last
token of the chat-templated prompt with the generation prompt appended -- the position whose state decides
the first answer token, and the one SCAV perturbs. Mean pooling over the prompt is an option.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from es2_plugin.errors import ES2UsageError

if TYPE_CHECKING:
    import torch

Pooling = Literal["last", "mean"]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_text(tokenizer: Any, prompt: str, *, system: str | None = None, response: str | None = None) -> str:
    """The chat-templated prompt with the generation prompt appended (plus ``response`` when given)."""
    if not has_chat_template(tokenizer):
        name = getattr(tokenizer, "name_or_path", "the tokenizer")
        raise ES2UsageError(f"tokenizer {name} has no chat template; use an instruct/chat model or set "
                            f"tokenizer.chat_template before calling es2")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text + response if response is not None else text


def encode_chat(tokenizer: Any, prompts: Sequence[str], *, padding_side: str = "left",
                max_length: int | None = None, system: str | None = None) -> Any:
    """Tokenise chat-templated prompts as one padded batch (``input_ids``, ``attention_mask``).

    The template already carries BOS where the model wants it, so no special tokens are added twice.
    """
    if not prompts:
        raise ES2UsageError("no prompts to encode; give at least one non-empty prompt")
    texts = [chat_text(tokenizer, p, system=system) for p in prompts]
    old_side = tokenizer.padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    try:
        return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False,
                         truncation=max_length is not None, max_length=max_length)
    finally:
        tokenizer.padding_side = old_side


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token per row; correct for left padding, right padding and batch size 1."""
    import torch

    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * (positions + 1)).argmax(dim=1)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling = "last") -> torch.Tensor:
    """``[b, t, d]`` states of one layer to ``[b, d]``: the last prompt token, or the masked mean."""
    if pooling == "last":
        idx = last_token_index(attention_mask)
        return hidden[range(hidden.shape[0]), idx]
    if pooling == "mean":
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    raise ES2UsageError(f"unknown pooling {pooling!r}; use 'last' or 'mean'")


def num_layers(model: Any) -> int:
    config = getattr(model, "config", model)
    config = getattr(config, "text_config", None) or config
    return int(config.num_hidden_layers)


def context_length(model: Any, tokenizer: Any = None) -> int | None:
    """The most positions the model takes (``max_position_embeddings``, else a finite tokenizer limit)."""
    config = getattr(model, "config", model)
    config = getattr(config, "text_config", None) or config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else None


def check_prompts_fit(model: Any, tokenizer: Any, prompts: Sequence[str], *, source: str = "prompts",
                      limit: int | None = None, limit_name: str = "the model's context") -> None:
    """Raise one line when a chat-templated prompt is empty or longer than the context (or ``limit``).

    Too-long prompts would otherwise be truncated (losing the generation prompt, the position ES2 reads) or run
    past the position embeddings, silently or deep inside the model.
    """
    context = context_length(model, tokenizer)
    cap = min(x for x in (context, limit) if x is not None) if (context or limit) else None
    for i, prompt in enumerate(prompts, 1):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ES2UsageError(f"prompt {i} of {source} is empty; remove empty prompts")
    if cap is None:
        return
    name = limit_name if limit is not None and (context is None or limit <= context) else "the model's context"
    lengths = [len(ids) for ids in tokenizer([chat_text(tokenizer, p) for p in prompts],
                                             add_special_tokens=False)["input_ids"]]
    for i, n in enumerate(lengths, 1):
        if n > cap:
            raise ES2UsageError(f"prompt {i} of {source} has {n} tokens with the chat template, more than "
                                f"{name} ({cap}); shorten or drop it")


def check_layers(layers: Sequence[int], n_layers: int) -> list[int]:
    bad = [layer for layer in layers if not 1 <= int(layer) <= n_layers]
    if bad:
        raise ES2UsageError(f"layers {bad} are out of range: this model has layers 1..{n_layers} "
                            f"(hidden_states index; 0 is the embedding output)")
    return [int(layer) for layer in layers]


def pooled_states(outputs_hidden: Sequence[torch.Tensor], attention_mask: torch.Tensor, layers: Sequence[int],
                  pooling: Pooling = "last") -> dict[int, torch.Tensor]:
    """Pool ``hidden_states`` of a forward pass at each requested layer (differentiable; used in training)."""
    return {layer: pool(outputs_hidden[layer], attention_mask, pooling) for layer in layers}


def collect_states(model: Any, tokenizer: Any, prompts: Sequence[str], *, layers: Sequence[int] | None = None,
                   batch_size: int = 16, pooling: Pooling = "last", max_length: int | None = None,
                   progress: Any = None) -> dict[int, torch.Tensor]:
    """Representations of ``prompts`` at ``layers`` (default all 1..L): ``{layer: float32 [n, d]}`` on CPU.

    ``progress`` is an optional callable ``progress(n_done)`` for rich progress bars.
    """
    import torch

    n_layers = num_layers(model)
    layers = check_layers(layers if layers is not None else range(1, n_layers + 1), n_layers)
    device = next(model.parameters()).device
    chunks: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(prompts), batch_size):
                batch = encode_chat(tokenizer, prompts[start:start + batch_size], max_length=max_length)
                batch = {k: v.to(device) for k, v in batch.items()}
                out = model(**batch, output_hidden_states=True, use_cache=False)
                for layer, states in pooled_states(out.hidden_states, batch["attention_mask"], layers,
                                                   pooling).items():
                    chunks[layer].append(states.float().cpu())
                if progress is not None:
                    progress(min(start + batch_size, len(prompts)))
    finally:
        model.train(was_training)
    return {layer: torch.cat(parts) for layer, parts in chunks.items()}
