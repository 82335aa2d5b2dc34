"""The last-prompt-token representation is the same whatever the padding and batch size."""

import pytest
import torch

from es2_plugin.errors import ES2UsageError
from es2_plugin.representations import collect_states, encode_chat, last_token_index, pool

PROMPTS = ["Hi", "How do I bake bread at home today?", "Write a poem about the sea."]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


def test_last_token_index_under_left_and_right_padding():
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    assert last_token_index(left).tolist() == [3, 3]
    assert last_token_index(right).tolist() == [1, 2]


def test_mean_pooling_ignores_padding():
    hidden = torch.arange(8, dtype=torch.float32).view(1, 4, 2)
    mask = torch.tensor([[0, 1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[3.0, 4.0]]


def test_batched_left_right_and_single_agree(model_and_tokenizer):
    model, tok = model_and_tokenizer
    batched = collect_states(model, tok, PROMPTS, batch_size=3)
    single = collect_states(model, tok, PROMPTS, batch_size=1)
    for layer in batched:
        torch.testing.assert_close(batched[layer], single[layer], atol=1e-5, rtol=1e-4)
    enc = encode_chat(tok, PROMPTS, padding_side="right")
    with torch.no_grad():
        out = model(**enc, output_hidden_states=True)
    right = pool(out.hidden_states[2], enc["attention_mask"])
    torch.testing.assert_close(right, single[2], atol=1e-5, rtol=1e-4)


def test_layer_zero_is_rejected(model_and_tokenizer):
    model, tok = model_and_tokenizer
    with pytest.raises(ES2UsageError, match=r"out of range: this model has layers 1\.\.4"):
        collect_states(model, tok, PROMPTS, layers=[0])


def test_tokenizer_without_chat_template_is_a_usage_error(model_and_tokenizer):
    model, tok = model_and_tokenizer
    template, tok.chat_template = tok.chat_template, None
    try:
        with pytest.raises(ES2UsageError, match="has no chat template"):
            encode_chat(tok, PROMPTS)
    finally:
        tok.chat_template = template
