"""A tiny tokenizer and a tiny randomly initialised Qwen2 model, built offline in a test (nothing downloaded).

The tokenizer is a byte-level BPE trained on the given texts: byte-level, so decoding its ids gives back exactly
the text it encoded, which lets a test compare a trainer's tokens with the template's rendering.
"""

from __future__ import annotations

from pathlib import Path

from tests.chat_template import HERMES_SPECIAL_TOKENS, HERMES_TEMPLATE

VOCAB = 3000


def tiny_tokenizer(texts: list[str], folder: Path, chat_template: str = HERMES_TEMPLATE):
    """A PreTrainedTokenizerFast carrying the chat template, saved to `folder` (a tokenizer folder to load)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=HERMES_SPECIAL_TOKENS,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       show_progress=False))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def tiny_model(tokenizer):
    """A one-layer Qwen2 with random weights (seeded): enough for a training step on the CPU."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32768,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return Qwen2ForCausalLM(config)
