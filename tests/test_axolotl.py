"""The axolotl plugin against real axolotl (skipped unless axolotl is importable).

axolotl pins its own transformers/lm-eval, so this runs in a separate virtualenv:
    python -m venv axvenv && axvenv/bin/pip install --no-deps axolotl addict numba llvmlite
    (plus this project's dependencies), then: axvenv/bin/python -m pytest tests/test_axolotl.py
"""

import pytest
import torch

axolotl_base = pytest.importorskip("axolotl.integrations.base")


def test_axolotl_loads_plugin_and_its_trainer_trains(tiny_model_dir, tmp_path):
    from axolotl.core.trainers.base import AxolotlTrainer
    from axolotl.core.training_args import AxolotlTrainingArguments
    from axolotl.utils.dict import DictDefault
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manager = axolotl_base.PluginManager.get_instance()
    manager.register("es2_plugin.integrations.axolotl.ES2AxolotlPlugin")
    assert "es2_plugin.integrations.axolotl.ES2AxolotlArgs" in manager.get_input_args()
    cfg = DictDefault({"es2": {"harmful": "es2:authored-harmful:test", "harmless": "es2:authored-harmless:test",
                               "layers": "1-3", "max_response_tokens": 4}})
    cls = manager.get_trainer_cls(cfg)
    assert issubclass(cls, AxolotlTrainer)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    args = AxolotlTrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                                    learning_rate=5e-3, save_strategy="no", report_to=[], use_cpu=True,
                                    disable_tqdm=True)
    trainer = cls(model=model, args=args, processing_class=tok)
    trainer.train()
    model.save_pretrained(tmp_path / "adapter")
    from peft import PeftModel

    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert (loaded(input_ids=ids).logits - base(input_ids=ids).logits).abs().max().item() > 1e-4
