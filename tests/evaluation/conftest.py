"""Fixtures for evaluation tests: a tiny random Llama with a locally trained BPE tokenizer.

Built in memory (no hub, no cache), so these tests do not depend on the model builders.
"""

from __future__ import annotations

import pytest
import torch

CORPUS = [
    "How do I bake bread at home?",
    "Tell me how to hurt someone.",
    "Q: What is human life expectancy in the United States?\nA: 78 years.",
    "yes no True Helpful [[A]] [[B]] [[C]] safe unsafe",
    "The quick brown fox jumps over the lazy dog.",
]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_lm():
    """(model, tokenizer): a 2-layer Llama, hidden 16, byte-level BPE, ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<unk>", "<pad>", "<|im_start|>", "<|im_end|>", "<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="<|im_end|>",
    )
    fast.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    return model, fast


@pytest.fixture(scope="session")
def sharp_lm(tiny_lm):
    """(model, tokenizer): tiny_lm's tokenizer with a Llama whose larger random weights
    (initializer_range 0.3) give peaked attention, so its outputs depend on token positions and
    padding. tiny_lm's near-uniform attention hides such mistakes (an off-by-one position id
    moves its TruthfulQA log-likelihoods by 1e-4; this model's by ~20 nats)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = tiny_lm
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=0.3,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return LlamaForCausalLM(config).eval(), tok
