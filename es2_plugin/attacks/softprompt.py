"""Soft-prompt attack: a few continuous embeddings after the user's request, optimised so the model answers
with an affirmative target ("Sure, here is").

One universal suffix is optimised over the prompts (Adam on the target's cross-entropy, model frozen) and then
appended to every prompt: cheap, and the standard threat model for embedding-space attacks on open weights.
The suffix sits inside the user turn, right after the request, before the template's closing tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from es2_plugin.attacks.base import Attack, AttackContext, AttackOutput, eos_ids, greedy_generate
from es2_plugin.errors import ES2UsageError

_SENTINEL = "<<ES2-SOFT-SUFFIX>>"


def _pad_left(rows: list[Any]) -> tuple[Any, Any]:
    """Left-pad ``[n_i, d]`` embedding rows into ``[b, t, d]`` plus the attention mask."""
    import torch

    width = max(int(r.shape[0]) for r in rows)
    d = rows[0].shape[1]
    embeds = rows[0].new_zeros(len(rows), width, d)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=rows[0].device)
    for i, r in enumerate(rows):
        embeds[i, width - r.shape[0]:] = r
        mask[i, width - r.shape[0]:] = 1
    return embeds, mask


class SoftPrompt(Attack):
    """Options: ``target`` affirmative answer start; ``n_tokens`` suffix length; ``steps`` Adam steps; ``lr``
    learning rate (relative to the embedding scale); ``train_prompts`` how many prompts the suffix is fitted on;
    ``seed``."""

    name = "softprompt"
    options: ClassVar[dict[str, Any]] = {"target": "Sure, here is", "n_tokens": 8, "steps": 30, "lr": 0.1,
                                         "train_prompts": 16, "seed": 0}

    def validate(self) -> None:
        for key in ("n_tokens", "steps", "train_prompts"):
            if not isinstance(self.opts[key], int) or self.opts[key] < 1:
                raise ES2UsageError(f"softprompt {key} must be a positive integer, got {self.opts[key]!r}")
        if not isinstance(self.opts["target"], str) or not self.opts["target"]:
            raise ES2UsageError("softprompt target must be a non-empty string such as 'Sure, here is'")

    def _segments(self, ctx: AttackContext, prompt: str, embed: Any) -> tuple[Any, Any]:
        import torch

        from es2_plugin.representations import chat_text

        text = chat_text(ctx.tokenizer, prompt + _SENTINEL, system=ctx.system)
        if _SENTINEL not in text:
            raise ES2UsageError("the chat template drops part of the user message; softprompt cannot place its suffix")
        head, tail = text.split(_SENTINEL, 1)
        device = embed.weight.device
        ids = [torch.tensor(ctx.tokenizer(part, add_special_tokens=False)["input_ids"], dtype=torch.long,
                            device=device) for part in (head, tail)]
        return embed(ids[0]).detach(), embed(ids[1]).detach()

    def __call__(self, ctx: AttackContext, prompts: Sequence[str]) -> AttackOutput:
        import torch
        import torch.nn.functional as F

        if not prompts:
            raise ES2UsageError("no prompts to attack; the prompt file is empty")
        model, tok = ctx.model, ctx.tokenizer
        embed = model.get_input_embeddings()
        device = embed.weight.device
        scale = float(embed.weight.detach().float().std())
        g = torch.Generator().manual_seed(int(self.opts["seed"]))
        suffix = (torch.randn(self.opts["n_tokens"], embed.weight.shape[1], generator=g) * scale)
        suffix = suffix.to(device=device, dtype=embed.weight.dtype).requires_grad_(True)
        target_ids = torch.tensor(tok(self.opts["target"], add_special_tokens=False)["input_ids"], device=device)
        target_emb = embed(target_ids).detach()
        n_target = int(target_ids.shape[0])
        segments = [self._segments(ctx, p, embed) for p in prompts]
        train = segments[: self.opts["train_prompts"]]
        opt = torch.optim.Adam([suffix], lr=float(self.opts["lr"]) * scale)
        flags = [p.requires_grad for p in model.parameters()]
        for p in model.parameters():
            p.requires_grad_(False)
        was_training = model.training
        model.eval()
        losses: list[float] = []
        try:
            for _ in range(int(self.opts["steps"])):
                opt.zero_grad()
                embeds, mask = _pad_left([torch.cat([h, suffix, t, target_emb]) for h, t in train])
                positions = (mask.cumsum(-1) - 1).clamp_min(0)
                logits = model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                               use_cache=False).logits
                pred = logits[:, -n_target - 1:-1, :].float()
                loss = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target_ids.repeat(len(train)))
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
        finally:
            for p, flag in zip(model.parameters(), flags, strict=True):
                p.requires_grad_(flag)
            model.train(was_training)
        suffix = suffix.detach()
        stop = eos_ids(model, tok)
        completions: list[str] = []
        model.eval()
        try:
            for start in range(0, len(prompts), ctx.batch_size):
                rows = [torch.cat([h, suffix, t]) for h, t in segments[start:start + ctx.batch_size]]
                embeds, mask = _pad_left(rows)
                new = greedy_generate(model, mask, ctx.max_new_tokens, stop, inputs_embeds=embeds)
                completions.extend(tok.decode(ids, skip_special_tokens=True) for ids in new)
                if ctx.progress is not None:
                    ctx.progress(len(completions))
        finally:
            model.train(was_training)
        return AttackOutput(list(prompts), completions, info={
            "attack": self.name, "target": self.opts["target"], "n_tokens": self.opts["n_tokens"],
            "steps": self.opts["steps"], "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None, "suffix_norm": float(suffix.float().norm(dim=1).mean()),
        })
