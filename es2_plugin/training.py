"""The whole ``es2 train`` run as one function (the CLI, the demo and benchmarks call it).

Order matters for "nothing half-written": every input is checked (output directory, prompt sources, config,
model, chat template, layers) before the output directory is created. Checkpoints go to
``OUTPUT/checkpoints``; the final adapter (or model), ``es2_config.json`` and the model card are written at
the end, ``es2_config.json`` last (its presence marks a finished run).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from es2_plugin import __version__
from es2_plugin.config import ES2Config
from es2_plugin.cpu import with_flushed_denormals
from es2_plugin.errors import ES2UsageError
from es2_plugin.io_utils import atomic_write_json, atomic_write_text

RUN_FILE = "es2_run.json"  # written when training starts: config, base stats, data (used by --resume)
CONFIG_FILE = "es2_config.json"  # written when training ends: every choice and the results
RESPONSES_FILE = "es2_responses.json"
CHECKPOINTS = "checkpoints"


def _complete(ckpt: Path) -> bool:
    """The Trainer writes ``trainer_state.json`` last: a checkpoint without a readable one was cut short."""
    try:
        json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _last_checkpoint(output: Path) -> Path | None:
    ckpts = sorted((p for p in (output / CHECKPOINTS).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
                    and _complete(p)), key=lambda p: int(p.name.split("-")[-1]))
    return ckpts[-1] if ckpts else None


def _drop_incomplete_checkpoints(output: Path) -> None:
    """After an abort (second Ctrl-C) mid-save: leave only complete checkpoints, never half of one."""
    for p in (output / CHECKPOINTS).glob("checkpoint-*"):
        if p.is_dir() and not _complete(p):
            shutil.rmtree(p, ignore_errors=True)


def check_output_dir(output: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse directories holding something else; ``--resume`` needs an unfinished ES2 run there."""
    if output.exists() and not output.is_dir():
        raise ES2UsageError(f"output {output} is a file; choose a directory path for --output")
    from es2_plugin.io_utils import check_writable_dir

    check_writable_dir(output)
    entries = [p for p in output.iterdir() if not p.name.startswith(".")] if output.is_dir() else []
    ours = (output / RUN_FILE).is_file()
    if resume:
        if not ours or _last_checkpoint(output) is None:
            raise ES2UsageError(f"nothing to resume in {output}: no ES2 checkpoint there; drop --resume to start")
        return
    if not entries:
        return
    if ours and overwrite:
        return
    if ours:
        raise ES2UsageError(f"output {output} already holds an ES2 run; pass --resume to continue it, --overwrite "
                            f"to replace it, or choose another --output")
    raise ES2UsageError(f"output {output} is not empty and holds something else ({entries[0].name}, ...); "
                        f"choose an empty or new directory for --output")


def _model_files(path: str) -> list[Path]:
    p = Path(path)
    if not p.is_dir():
        return []
    return sorted([*p.glob("*.safetensors"), p / "config.json"])


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"es2-plugin": __version__}
    for name in ("torch", "transformers", "peft", "trl"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


class _Interrupt:
    """First Ctrl-C: finish the step, save a checkpoint, stop. Second Ctrl-C: stop now."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> _Interrupt:
        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            sys.stderr.write("\nes2 train: saving a checkpoint after this step (Ctrl-C again to abort)\n")

        try:
            self._old = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _stop_callback(flag: _Interrupt) -> Any:
    from transformers import TrainerCallback

    class StopOnRequest(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if flag.requested:
                control.should_save = True
                control.should_training_stop = True
            return control

    return StopOnRequest()


def model_card(summary: dict) -> str:
    cfg = summary["config"]
    margins = summary.get("margins", {})
    rows = "\n".join(f"| {layer} | {margins['before'].get(layer, float('nan')):.3f} | "
                     f"{margins['after'].get(layer, float('nan')):.3f} |"
                     for layer in margins.get("after", {}))
    kind = "full fine-tune" if cfg["full_finetune"] else f"LoRA adapter (r={cfg['lora_r']}, alpha={cfg['lora_alpha']})"
    return f"""---
library_name: peft
base_model: {summary['base']['path']}
tags: [es2, safety, representation-engineering]
---
# ES2 fine-tune of `{summary['base']['path']}`

A {kind} trained with ES2 (Embedding Space Separation) by es2-plugin {__version__}: the last-prompt-token
hidden states of harmful and harmless prompts were pushed apart on layers {cfg['layers']} while a KL term kept
the output distribution close to the base model.

- objective: `{cfg['objective']}` {cfg['objective_options']}, beta = {cfg['beta']}, T = {cfg['temperature']}
- KL on {cfg['kl_on']} classes over {cfg['kl_span']} (first {cfg['first_response_tokens']} answer positions
  weighted x{cfg['first_response_weight']}), reference: {summary['reference']}
- steps: {summary['steps_done']}, lr {cfg['learning_rate']}, {cfg['batch_size']} + {cfg['batch_size']} prompts per batch, seed {cfg['seed']}
- final harmless KL: {summary.get('final', {}).get('es2_kl_harmless', float('nan')):.4f}

| layer | normalised margin before | after |
|---|---|---|
{rows}

Load: `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), THIS_DIR)`, or
`lm_eval --model hf --model_args pretrained=BASE,peft=THIS_DIR`. Every setting is in `{CONFIG_FILE}`.
ES2 makes SCAV-style embedding attacks need larger pushes; it is not a guarantee of safety.
"""


@with_flushed_denormals
def run_training(*, model_path: str | None, harmful: str, harmless: str, output: str | os.PathLike[str],
                 config: ES2Config, resume: bool = False, overwrite: bool = False,
                 harmful_column: str | None = None, harmless_column: str | None = None,
                 trust_remote_code: bool = False, display: bool = True, resume_command: str | None = None,
                 extra_callbacks: list | None = None, log: Any = print) -> dict:
    """Train ES2 and write the output directory. Returns the summary written to ``es2_config.json``.

    An interrupted run returns ``{"interrupted": True, "checkpoint": ...}`` after saving a checkpoint.
    """
    from es2_plugin.data import load_records

    start = time.time()
    out = Path(output).expanduser()
    check_output_dir(out, resume=resume, overwrite=overwrite)
    saved: dict = {}
    if resume:
        saved = json.loads((out / RUN_FILE).read_text(encoding="utf-8"))
        config = ES2Config.from_dict(saved["config"], source=str(out / RUN_FILE))
        model_path, harmful, harmless = saved["base"]["path"], saved["data"]["harmful"], saved["data"]["harmless"]
        harmful_column, harmless_column = saved["data"]["harmful_column"], saved["data"]["harmless_column"]
    h_records = load_records(harmful, harmful_column)  # bad data fails here, before torch is even imported
    b_records = load_records(harmless, harmless_column)
    from es2_plugin import plugins

    plugins.get("objectives", config.objective)  # an unknown name fails before anything is written
    if model_path is not None:
        from es2_plugin.modeling import check_model_dir

        check_model_dir(model_path)
    import warnings

    import torch
    from transformers.utils import logging as hf_logging

    from es2_plugin import callbacks as cb
    from es2_plugin.modeling import load_model_and_tokenizer
    from es2_plugin.trainer import (
        ES2Collator,
        ES2NonFiniteLoss,
        ES2Trainer,
        PairedDataset,
        build_examples,
        cache_reference,
        measure_base,
        measure_margins,
    )

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
    model, tokenizer = load_model_and_tokenizer(model_path, trust_remote_code=trust_remote_code)
    base_path = str(getattr(model, "name_or_path", None) or model_path)
    from es2_plugin.representations import chat_text

    chat_text(tokenizer, "check")  # a model without a chat template fails here, before anything is written
    h_prompts, b_prompts = [r["prompt"] for r in h_records], [r["prompt"] for r in b_records]
    from es2_plugin.representations import check_prompts_fit

    for prompts, source in ((h_prompts, harmful), (b_prompts, harmless)):
        check_prompts_fit(model, tokenizer, prompts, source=str(source), limit=config.max_length,
                          limit_name="max_length")
    if not resume and not (isinstance(config.layers, str) and config.layers.strip().lower() == "auto"):
        from es2_plugin.hooks.builtin_layers import num_layers, parse_layers

        parse_layers(config.layers, num_layers(model.config))  # out-of-range layers fail before probing
    if resume:
        probe_summary = saved["probe"]
    else:
        log(f"Probing the base model on {len(h_prompts)} harmful and {len(b_prompts)} harmless prompts ...")
        config, probe_summary = measure_base(model, tokenizer, h_prompts, b_prompts, config)
    if overwrite and out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    responses_path = out / RESPONSES_FILE
    if resume and responses_path.is_file():
        cached = json.loads(responses_path.read_text(encoding="utf-8"))
        h_ex, b_ex = cached["harmful"], cached["harmless"]
    else:
        log("Encoding prompts" + (" and generating the base model's own answers (once) ..."
                                  if config.kl_span == "prompt+response" and config.responses != "none" else " ..."))
        h_ex = build_examples(model, tokenizer, h_records, config)
        b_ex = build_examples(model, tokenizer, b_records, config)
        atomic_write_json(responses_path, {"harmful": h_ex, "harmless": b_ex})
    reference = config.resolved_reference()
    if reference == "cached":
        cache_reference(model, h_ex + b_ex, topk=config.cached_topk, temperature=config.temperature)

    base_info = {"path": base_path, "sha256": None, "files": [p.name for p in _model_files(base_path)]}
    if not resume:
        from es2_plugin.trainer import file_sha256

        files = _model_files(base_path)
        base_info["sha256"] = file_sha256(files) if files else None
        atomic_write_json(out / RUN_FILE, {
            "config": config.to_dict(), "probe": probe_summary, "base": base_info,
            "data": {"harmful": str(harmful), "harmless": str(harmless), "harmful_column": harmful_column,
                     "harmless_column": harmless_column, "n_harmful": len(h_records), "n_harmless": len(b_records)},
        })
    else:
        base_info = saved["base"]

    torch.manual_seed(config.seed)
    if config.full_finetune:
        model.requires_grad_(True)
    else:
        from peft import LoraConfig, get_peft_model

        targets = config.lora_targets
        model = get_peft_model(model, LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                 lora_dropout=config.lora_dropout, target_modules=targets,
                                                 task_type="CAUSAL_LM"))
    model.train()
    args = training_arguments(config, out / CHECKPOINTS, display=display)
    flag = _Interrupt()
    cb.CLI_DISPLAY = display
    trainer = ES2Trainer(model=model, args=args, train_dataset=PairedDataset(h_ex, b_ex),
                         data_collator=ES2Collator(tokenizer.pad_token_id, config), es2_config=config,
                         callbacks=[_stop_callback(flag), *(extra_callbacks or [])])
    if display:  # the rich bar replaces the Trainer's raw log-dict printouts
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    last = _last_checkpoint(out) if resume else None
    try:
        with flag:
            trainer.train(resume_from_checkpoint=str(last) if last else None)
    except KeyboardInterrupt:
        _drop_incomplete_checkpoints(out)
        raise
    except ES2NonFiniteLoss as exc:
        good = _last_checkpoint(out)
        where = f"last good checkpoint kept: {good}" if good else "no checkpoint was saved before it"
        raise ES2UsageError(f"training stopped: {exc} ({where}); lower learning_rate or beta, or check the data") from None
    finally:
        cb.CLI_DISPLAY = False
    if flag.requested and trainer.state.global_step < config.steps:
        ckpt = _last_checkpoint(out)
        log(f"Interrupted at step {trainer.state.global_step}/{config.steps}; checkpoint saved in {ckpt}.")
        if resume_command:
            log(f"Resume with: {resume_command}")
        return {"interrupted": True, "checkpoint": str(ckpt), "step": trainer.state.global_step}

    metrics = next((cb_ for cb_ in trainer.callback_handler.callbacks if isinstance(cb_, cb.ES2MetricsCallback)), None)
    history = metrics.history if metrics else []
    inner = trainer.model
    probe_h, probe_b = h_prompts[:256], b_prompts[:256]
    after = measure_margins(inner, tokenizer, probe_h, probe_b, config)
    before = {int(k): float(v) for k, v in probe_summary["separation"].items() if int(k) in config.layers}
    summary = {
        "es2_plugin_version": __version__, "versions": _versions(), "base": base_info, "config": config.to_dict(),
        "layers": config.layers, "layer_norms": config.layer_norms, "p1": config.p1,
        "probe_accuracy": probe_summary["accuracy"], "reference": reference,
        "seeds": {"seed": config.seed, "data_seed": config.seed},
        "data": {"harmful": str(harmful), "harmless": str(harmless), "n_harmful": len(h_records),
                 "n_harmless": len(b_records)},
        "steps_done": trainer.state.global_step, "final": history[-1] if history else {},
        "margins": {"before": before, "after": after,
                    "ratio": {k: after[k] / before[k] for k in after if before.get(k)}},
        "history": history, "train_seconds": round(time.time() - start, 1),
        "kind": "full" if config.full_finetune else "lora",
    }
    _save_final(trainer.model, tokenizer, out, summary, full=config.full_finetune)
    return summary


def training_arguments(config: ES2Config, output_dir: Path, *, display: bool = False, **overrides: Any) -> Any:
    """HF ``TrainingArguments`` matching an ES2Config (CPU-safe, no reporting integrations)."""
    import torch
    from transformers import TrainingArguments

    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir), max_steps=config.steps, per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, warmup_steps=config.warmup_steps, lr_scheduler_type="constant",
        logging_steps=config.logging_steps, save_steps=config.save_steps, save_total_limit=2,
        seed=config.seed, data_seed=config.seed, remove_unused_columns=False, report_to=[],
        max_grad_norm=config.max_grad_norm, dataloader_num_workers=0, disable_tqdm=display,
        use_cpu=not torch.cuda.is_available(), save_only_model=False,
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def _save_final(model: Any, tokenizer: Any, out: Path, summary: dict, *, full: bool) -> None:
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=".final.", dir=out))
    try:
        if full:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        for item in tmp.iterdir():
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(out / "README.md", model_card(summary))
    atomic_write_json(out / CONFIG_FILE, summary)
