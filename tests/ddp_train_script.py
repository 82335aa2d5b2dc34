"""Run by tests/test_trainer.py under ``torchrun --nproc_per_node 2`` (gloo, CPU): ES2 with cross-rank means."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist


def main(model_dir: str, out: str) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, TrainingArguments

    from es2_plugin import objectives as O
    from es2_plugin.config import ES2Config
    from es2_plugin.data import load_records
    from es2_plugin.representations import collect_states
    from es2_plugin.trainer import ES2Collator, ES2Trainer, PairedDataset, build_examples, measure_base

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    harmful, harmless = load_records("es2:authored-harmful:test"), load_records("es2:authored-harmless:test")
    hp, bp = [r["prompt"] for r in harmful], [r["prompt"] for r in harmless]
    config = ES2Config(layers="1-3", steps=12, batch_size=4, learning_rate=5e-3, max_response_tokens=6)
    config, probe = measure_base(model, tok, hp, bp, config)
    h_ex, b_ex = build_examples(model, tok, harmful, config), build_examples(model, tok, harmless, config)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    local = {}

    class RecordLocal(TrainerCallback):
        pass

    args = TrainingArguments(output_dir=str(Path(out) / "ckpt"), max_steps=config.steps,
                             per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
                             lr_scheduler_type="constant", logging_steps=4, save_strategy="no",
                             remove_unused_columns=False, report_to=[], use_cpu=True, disable_tqdm=True,
                             ddp_backend="gloo", seed=0)
    trainer = ES2Trainer(model=model, args=args, train_dataset=PairedDataset(h_ex, b_ex),
                         data_collator=ES2Collator(tok.pad_token_id, config), es2_config=config,
                         callbacks=[RecordLocal()])
    # one batch per rank: global (all-gathered) margin vs this rank's own margin, to document the difference
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    from es2_plugin.representations import pooled_states

    states = pooled_states(outputs.hidden_states, batch["prompt_mask"], config.layers)
    _, global_margins = trainer.es2_separation(states, batch["is_harmful"].bool())
    layer = config.layers[0]
    s = states[layer] / config.layer_norms[layer]
    local["margin"] = O.centroid_distance(s[batch["is_harmful"]], s[~batch["is_harmful"]]).item()
    trainer.train()
    rank, world = dist.get_rank(), dist.get_world_size()
    margins = [None] * world
    dist.all_gather_object(margins, local["margin"])
    if rank == 0:
        model.save_pretrained(Path(out) / "adapter")
        base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), Path(out) / "adapter").eval()
        after_h = collect_states(loaded, tok, hp, layers=config.layers)
        after_b = collect_states(loaded, tok, bp, layers=config.layers)
        ids = torch.tensor([h_ex[0]["input_ids"]])
        with torch.no_grad():
            change = (loaded(input_ids=ids).logits - base(input_ids=ids).logits).abs().max().item()
        ratio = {layer: O.centroid_distance(after_h[layer], after_b[layer]).item() / config.layer_norms[layer]
                 / probe["separation"][layer] for layer in config.layers}
        Path(out, "ddp_result.json").write_text(json.dumps({
            "world_size": world, "logit_change": change, "ratio": ratio,
            "global_margin": global_margins[layer], "rank_margins_mean": sum(margins) / world,
            "rank_margins": margins}))
    dist.barrier()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
