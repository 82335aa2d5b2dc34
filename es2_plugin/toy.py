"""The built-in model: a ~1M-parameter Llama chat model the package trains itself from its authored prompts.

Why: every command needs a model that refuses harmful requests and answers harmless ones, offline and
without a model hub. We train one in well under a minute on a CPU: a byte-level BPE tokenizer (2k vocab) and
a 4-layer Llama, next-token loss on the response only (harmful -> refusal, harmless -> helpful answer). It is
saved once in the user cache as a normal Hugging Face directory (safetensors), so ``transformers``, ``peft``
and ``lm_eval --model hf`` load it by path. Importing this module is cheap; torch is imported when used.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from es2_plugin import __version__
from es2_plugin.cpu import flushed_denormals
from es2_plugin.io_utils import atomic_dir
from es2_plugin.representations import chat_text

#: Bump when the recipe changes (architecture, data, training): cached models of older recipes are rebuilt.
RECIPE_VERSION = 1
DEFAULT_STEPS = 300
BATCH_SIZE = 32
HARMFUL_PER_BATCH = 16  # the rest of each batch is harmless (plus borderline) prompts
LEARNING_RATE = 3e-3
WARMUP_STEPS = 30
VOCAB_SIZE = 2048
MAX_NEW_TOKENS = 32
META_FILE = "es2_toy.json"
WEIGHTS_FILE = "model.safetensors"

SPECIAL_TOKENS = ["<pad>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ARCH = {
    "hidden_size": 128,
    "intermediate_size": 344,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}


def cache_root() -> Path:
    """``$ES2_CACHE_DIR``, else ``$XDG_CACHE_HOME/es2-plugin``, else ``~/.cache/es2-plugin``."""
    if os.environ.get("ES2_CACHE_DIR"):
        return Path(os.environ["ES2_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "es2-plugin"


def toy_model_dir(seed: int = 0) -> Path:
    """Where the built-in model for ``seed`` lives (it may not be built yet)."""
    return cache_root() / "toy-model" / f"seed-{seed}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _training_rows() -> tuple[list[dict], list[dict]]:
    """(harmful, helpful) training rows: harmful train; harmless train plus borderline train."""
    from es2_plugin.prompts import load_prompts

    harmful = load_prompts("harmful", "train")
    helpful = load_prompts("harmless", "train") + load_prompts("borderline", "train")
    return harmful, helpful


def _train_tokenizer(rows: list[dict]):
    """Byte-level BPE trained on the training prompts and responses, wrapped with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = [text for r in rows for text in (r["prompt"], r["response"])]
    raw.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="<|end|>",
                                        bos_token=None, unk_token=None)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def _encode_pairs(tokenizer: Any, rows: list[dict]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids + eos) per row; the chat template splits cleanly at the newline."""
    out = []
    for r in rows:
        p = tokenizer(chat_text(tokenizer, r["prompt"]), add_special_tokens=False)["input_ids"]
        a = tokenizer(r["response"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append((p, a))
    return out


def _collate(pairs: list[tuple[list[int], list[int]]], pad_id: int):
    """Right-padded batch; labels only on response tokens (the prompt and padding are masked)."""
    import torch

    width = max(len(p) + len(a) for p, a in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (p, a) in enumerate(pairs):
        seq = p + a
        ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, len(p) : len(seq)] = torch.tensor(a)
        mask[i, : len(seq)] = 1
    return ids, mask, labels


def _response_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """Next-token cross-entropy on response tokens only; the LM head runs only where a label exists."""
    import torch.nn.functional as F

    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[:, :-1]
    target = labels[:, 1:]
    keep = target != -100
    logits = model.lm_head(hidden[keep])
    return F.cross_entropy(logits, target[keep])


def _lr_at(step: int, steps: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < WARMUP_STEPS:
        return LEARNING_RATE * (step + 1) / WARMUP_STEPS
    t = (step - WARMUP_STEPS) / max(1, steps - WARMUP_STEPS)
    return LEARNING_RATE * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=True,
                    disable=not enabled)


def _generate(model: Any, tokenizer: Any, prompts: list[str], batch_size: int = 32) -> list[str]:
    """Greedy completions (new tokens only, special tokens dropped)."""
    import torch

    outs: list[str] = []
    for i in range(0, len(prompts), batch_size):
        texts = [chat_text(tokenizer, p) for p in prompts[i : i + batch_size]]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        outs += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return outs


def _evaluate(model: Any, tokenizer: Any, split: str) -> dict:
    from es2_plugin.judges import keyword_refuses
    from es2_plugin.prompts import load_prompts

    model.eval()
    result: dict[str, Any] = {"split": split}
    for kind, key in (("harmful", "harmful_refusal"), ("harmless", "harmless_compliance"),
                      ("borderline", "borderline_compliance")):
        prompts = [r["prompt"] for r in load_prompts(kind, split)]
        refused = keyword_refuses(_generate(model, tokenizer, prompts))
        rate = sum(refused) / max(1, len(refused))
        result[key] = round(rate if kind == "harmful" else 1.0 - rate, 4)
        result[f"n_{kind}"] = len(prompts)
    return result


def evaluate_refusal(model_dir: str | os.PathLike[str], split: str = "test") -> dict:
    """Keyword refusal rate on the authored harmful prompts and compliance on harmless/borderline ones.

    Greedy decoding of up to ``MAX_NEW_TOKENS`` tokens; judged by ``es2_plugin.judges.keyword_refuses``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, use_safetensors=True)
    return _evaluate(model, tokenizer, split)


def build_toy_model(out_dir: str | os.PathLike[str], seed: int = 0, steps: int | None = None,
                    progress: bool = True, evaluate: bool = True) -> Path:
    """Train the built-in model into ``out_dir`` (atomically: a temp sibling renamed into place).

    Deterministic for a given seed and step budget (trained on one thread). Writes ``es2_toy.json`` with
    the recipe, metrics on the held-out split (skipped with ``evaluate=False``) and the weights' sha256.
    """
    import torch

    steps = DEFAULT_STEPS if steps is None else int(steps)
    threads = torch.get_num_threads()
    # One thread: the same weights on any machine, and no collapse when other processes share the cores
    # (measured here: 2 threads under load were 6x slower than 1).
    torch.set_num_threads(1)
    try:
        with flushed_denormals():
            return _build(Path(out_dir), seed, steps, progress, evaluate)
    finally:
        torch.set_num_threads(threads)


def _build(target: Path, seed: int, steps: int, progress: bool, evaluate: bool) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    start = time.perf_counter()
    harmful, helpful = _training_rows()
    tokenizer = _train_tokenizer(harmful + helpful)
    harmful_pairs = _encode_pairs(tokenizer, harmful)
    helpful_pairs = _encode_pairs(tokenizer, helpful)

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **ARCH)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01, betas=(0.9, 0.98))
    half = HARMFUL_PER_BATCH
    loss_ema = None
    model.train()
    with _progress(progress) as bar:
        task = bar.add_task(f"Training the built-in model (seed {seed})", total=steps, info="")
        for step in range(steps):
            hi = torch.randint(len(harmful_pairs), (half,), generator=gen).tolist()
            bi = torch.randint(len(helpful_pairs), (BATCH_SIZE - half,), generator=gen).tolist()
            ids, mask, labels = _collate([harmful_pairs[i] for i in hi] + [helpful_pairs[i] for i in bi],
                                         tokenizer.pad_token_id)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, steps)
            loss = _response_loss(model, ids, mask, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            loss_ema = loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * loss.item()
            bar.update(task, advance=1, info=f"loss {loss_ema:.3f}")
        train_seconds = time.perf_counter() - start
        metrics: dict = {}
        if evaluate:
            eval_task = bar.add_task("Checking refusal on held-out prompts", total=None, info="")
            metrics = _evaluate(model, tokenizer, "test")
            bar.remove_task(eval_task)

    from transformers.utils import logging as hf_logging

    bars_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # our own progress bar is enough; no "Writing model shards" noise
    try:
        with atomic_dir(target) as tmp:
            tokenizer.save_pretrained(tmp)
            model.save_pretrained(tmp, safe_serialization=True)
            _write_meta(tmp, model, seed, steps, loss_ema, train_seconds, start, metrics)
    finally:
        if bars_on:
            hf_logging.enable_progress_bar()
    return target


def _write_meta(tmp: Path, model: Any, seed: int, steps: int, loss_ema: float | None, train_seconds: float,
                start: float, metrics: dict) -> None:
    meta = {
        "recipe_version": RECIPE_VERSION,
        "package_version": __version__,
        "seed": seed,
        "steps": steps,
        "batch_size": BATCH_SIZE,
        "harmful_per_batch": HARMFUL_PER_BATCH,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "train_loss_ema": round(float(loss_ema or 0.0), 4),
        "train_seconds": round(train_seconds, 1),
        "build_seconds": round(time.perf_counter() - start, 1),
        "torch_threads": 1,
        "metrics": metrics,
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": _sha256(tmp / WEIGHTS_FILE),
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def check_toy_model(model_dir: str | os.PathLike[str], steps: int | None = None) -> str | None:
    """Why ``model_dir`` cannot be reused (one short phrase), or None when it is complete and intact."""
    d = Path(model_dir)
    if not d.is_dir():
        return "not built yet"
    try:
        meta = json.loads((d / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{META_FILE} is missing or unreadable"
    if meta.get("recipe_version") != RECIPE_VERSION:
        return "it was built by an older recipe"
    if steps is not None and meta.get("steps") != steps:
        return f"it was built with {meta.get('steps')} steps, not {steps}"
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", WEIGHTS_FILE):
        if not (d / name).is_file():
            return f"{name} is missing"
    if _sha256(d / WEIGHTS_FILE) != meta.get("weights_sha256"):
        return "the weights file is corrupt (sha256 mismatch)"
    return None


def ensure_toy_model(seed: int = 0, rebuild: bool = False, console: Any = None, steps: int | None = None) -> Path:
    """Path to the built-in model for ``seed``, building it first when missing, corrupt or outdated.

    Prints one line saying why a (re)build happens, on ``console`` (a rich Console) or stderr. ``steps``
    (default: the recipe's) is for quick tests; a cache built with another budget is rebuilt.
    """
    steps = DEFAULT_STEPS if steps is None else int(steps)
    target = toy_model_dir(seed)
    reason = "rebuild requested" if rebuild else check_toy_model(target, steps=steps)
    if reason is None:
        return target
    message = f"Building the built-in model (seed {seed}, about a minute) in {target}: {reason}."
    if console is not None:
        console.print(message, markup=False, highlight=False)
    else:
        print(message, file=sys.stderr)
    return build_toy_model(target, seed=seed, steps=steps)
