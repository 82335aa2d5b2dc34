"""The shared tiny model is a real chat model every later test can load by path."""

import time

from tiny_model import build_tiny_chat_model


def test_tiny_model_builds_in_under_a_second(tmp_path):
    import transformers  # noqa: F401 - import cost is not the fixture's build time

    build_tiny_chat_model(tmp_path / "warm")
    start = time.perf_counter()
    build_tiny_chat_model(tmp_path / "m")
    assert time.perf_counter() - start < 1.5  # 1 s target; slack for a loaded CI machine


def test_tiny_model_loads_and_applies_chat_template(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|user|>\nHi<|end|>\n<|assistant|>\n"
    ids = tok(text, return_tensors="pt")
    out = model(**ids, output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert (tiny_model_dir / "model.safetensors").is_file()
