"""ES2Trainer / ES2SFTTrainer as a user's script would use them, reference strategies, and 2-process DDP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from es2_plugin import objectives as O
from es2_plugin.config import ES2Config
from es2_plugin.data import load_records
from es2_plugin.trainer import (
    ES2Collator,
    ES2Trainer,
    PairedDataset,
    build_examples,
    cache_reference,
    measure_base,
)

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_num_threads(old)


def _setup(tiny_model_dir, **cfg):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    harmful = load_records("es2:authored-harmful:test")
    harmless = load_records("es2:authored-harmless:test")
    config = ES2Config(**{"layers": "1-3", "steps": 16, "batch_size": 4, "learning_rate": 5e-3,
                          "max_response_tokens": 6, **cfg})
    config, _ = measure_base(model, tok, [r["prompt"] for r in harmful], [r["prompt"] for r in harmless], config)
    h_ex, b_ex = build_examples(model, tok, harmful, config), build_examples(model, tok, harmless, config)
    torch.manual_seed(0)
    if not config.full_finetune:
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    return model, tok, config, h_ex, b_ex, harmful, harmless


def _args(tmp_path, config, cls=None, **extra):
    from transformers import TrainingArguments

    cls = cls or TrainingArguments
    return cls(output_dir=str(tmp_path / "ckpt"), max_steps=config.steps, per_device_train_batch_size=config.batch_size,
               learning_rate=config.learning_rate, lr_scheduler_type="constant", logging_steps=4, save_strategy="no",
               remove_unused_columns=False, report_to=[], use_cpu=True, disable_tqdm=True, seed=0, **extra)


def _margins_and_kl(model, tok, config, harmful, harmless):
    """Normalised centroid distance per layer and exact harmless KL vs the base (adapter off)."""
    from es2_plugin.representations import collect_states, encode_chat

    hp, bp = [r["prompt"] for r in harmful], [r["prompt"] for r in harmless]
    h = collect_states(model, tok, hp, layers=config.layers)
    b = collect_states(model, tok, bp, layers=config.layers)
    margins = {layer: O.centroid_distance(h[layer], b[layer]).item() / config.layer_norms[layer]
               for layer in config.layers}
    enc = encode_chat(tok, bp)
    model.eval()
    with torch.no_grad():
        cur = model(**enc).logits
        with model.disable_adapter():
            ref = model(**enc).logits
    return margins, O.kl_to_reference(cur, ref, enc["attention_mask"]).item()


def test_es2_trainer_separates_chosen_layers_and_keeps_harmless_kl_small(tiny_model_dir, tmp_path):
    model, tok, config, h_ex, b_ex, harmful, harmless = _setup(tiny_model_dir)
    before, kl0 = _margins_and_kl(model, tok, config, harmful, harmless)
    trainer = ES2Trainer(model=model, args=_args(tmp_path, config), train_dataset=PairedDataset(h_ex, b_ex),
                         data_collator=ES2Collator(tok.pad_token_id, config), es2_config=config)
    trainer.train()
    after, kl = _margins_and_kl(model, tok, config, harmful, harmless)
    ratios = {layer: after[layer] / before[layer] for layer in config.layers}
    assert kl0 == pytest.approx(0.0, abs=1e-6)
    assert min(ratios.values()) > 10, ratios  # measured ~x60-x150 on layers 1-3
    assert kl < 0.05, kl  # measured ~0.01
    from es2_plugin.callbacks import ES2MetricsCallback

    history = next(c for c in trainer.callback_handler.callbacks if isinstance(c, ES2MetricsCallback)).history
    assert history and {"es2_sep", "es2_kl", "es2_kl_harmless", "es2_margin_L1"} <= set(history[-1])
    assert history[-1]["es2_sep"] < history[0]["es2_sep"]


def test_es2_sft_trainer_adapter_loads_back_and_changes_the_model(tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig

    from es2_plugin.trainer import ES2SFTTrainer

    model, tok, config, h_ex, b_ex, *_ = _setup(tiny_model_dir, steps=6)
    args = _args(tmp_path, config, cls=SFTConfig, dataset_kwargs={"skip_prepare_dataset": True})
    trainer = ES2SFTTrainer(model=model, args=args, train_dataset=PairedDataset(h_ex, b_ex).to_hf(),
                            data_collator=ES2Collator(tok.pad_token_id, config), processing_class=tok,
                            es2_config=config)
    trainer.train()
    trainer.model.save_pretrained(tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([h_ex[0]["input_ids"]])
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits
        loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "adapter")
        tuned = loaded.eval()(input_ids=ids).logits
    assert (tuned - base_logits).abs().max().item() > 1e-3


def test_full_finetune_with_frozen_reference_trains(tiny_model_dir, tmp_path):
    model, tok, config, h_ex, b_ex, *_ = _setup(tiny_model_dir, steps=4, full_finetune=True, learning_rate=1e-3)
    first = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    trainer = ES2Trainer(model=model, args=_args(tmp_path, config), train_dataset=PairedDataset(h_ex, b_ex),
                         data_collator=ES2Collator(tok.pad_token_id, config), es2_config=config)
    assert trainer.es2_reference == "frozen"
    trainer.train()
    assert (model.model.layers[0].mlp.up_proj.weight - first).abs().max().item() > 0
    ref_w = trainer.es2_ref_model.model.layers[0].mlp.up_proj.weight
    assert torch.equal(ref_w, first)


def test_cached_topk_reference_error_vs_exact_kl(tiny_model_dir):
    """Cached top-k KL: a lower bound on the exact KL, exact (fp16 storage aside) when k covers the vocabulary.

    The random tiny model is nearly uniform over its 384 tokens (the worst case for top-k); the error on a peaked
    chat model is measured in benchmarks/train_cost.py.
    """
    model, tok, config, h_ex, b_ex, *_ = _setup(tiny_model_dir)
    for name, p in model.named_parameters():  # perturb the adapter as training would
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(1))
    results = {}
    for k in (384, 64):
        examples = [dict(e) for e in b_ex[:16]]
        with model.disable_adapter():
            cache_reference(model, examples, topk=k, temperature=1.0)
        batch = ES2Collator(tok.pad_token_id, config)([{"harmful": e, "harmless": e} for e in examples])
        mask = batch["kl_weights"] > 0
        with torch.no_grad():
            cur = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            with model.disable_adapter():
                ref = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        exact = O.kl_to_reference(cur, ref, mask).item()
        results[k] = O.kl_to_reference_topk(cur, batch["ref_logp"], batch["ref_idx"], mask).item()
    assert exact > 1e-3
    assert abs(results[384] - exact) / exact < 0.02, (results, exact)
    assert 0 < results[64] <= exact * 1.01


def test_collator_pairs_classes_and_weights_first_answer_positions():
    config = ES2Config(first_response_tokens=2, first_response_weight=5.0, kl_on="harmless")
    h = {"input_ids": [1, 2, 3, 4, 5], "prompt_len": 3}
    b = {"input_ids": [6, 7, 8, 9], "prompt_len": 2}
    batch = ES2Collator(0, config)([{"harmful": h, "harmless": b}])
    assert batch["is_harmful"].tolist() == [True, False]
    assert batch["prompt_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert batch["kl_weights"].tolist() == [[0, 0, 0, 0, 0], [1, 5, 5, 1, 0]]  # position 1 predicts the answer


@pytest.mark.integration
def test_torchrun_two_processes_gloo(tiny_model_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(HERE)}
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29517",
                           str(HERE / "ddp_train_script.py"), str(tiny_model_dir), str(out)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "ddp_result.json").read_text())
    assert result["world_size"] == 2
    assert result["logit_change"] > 1e-3
    assert min(result["ratio"].values()) > 5, result
    # class means span both ranks: the gathered margin differs from what each rank alone would see
    assert abs(result["global_margin"] - result["rank_margins_mean"]) > 0.01 * result["global_margin"]


def test_axolotl_plugin_trainer_class_trains_with_es2_section(tiny_model_dir, tmp_path):
    """The class axolotl would get (here on HF Trainer; axolotl itself is tested in a separate venv if present)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from es2_plugin.integrations.axolotl import ES2AxolotlPlugin, make_trainer_cls

    assert ES2AxolotlPlugin().get_trainer_cls({"base_model": "x"}) is None
    section = {"harmful": "es2:authored-harmful:test", "harmless": "es2:authored-harmless:test", "layers": "1-3",
               "max_response_tokens": 4}
    cls = make_trainer_cls(section, base=Trainer)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=5e-3,
                             save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = cls(model=model, args=args, processing_class=tok)
    assert trainer.es2_config.layers == [1, 2, 3] and len(trainer.train_dataset) == 60
    trainer.train()
    assert any(p.abs().max().item() > 0 for n, p in model.named_parameters() if "lora_B" in n)
