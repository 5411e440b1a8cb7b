"""Write a small random gpt-oss checkpoint in exactly the published layout: config.json with the
MXFP4 quantization_config, sharded safetensors with model.safetensors.index.json, bf16 weights,
uint8 MXFP4 expert blocks and scales, and a byte-level tokenizer.json with the harmony special
tokens. For tests, benchmarks, and trying the whole application without the 13 GB download.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from llm.mxfp4 import encode_rows

#: The harmony special tokens, in the order the real tokenizer numbers them (it puts them at
#: 199998 and up; here they follow the 256 byte tokens).
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>", "<|reserved_200000|>", "<|reserved_200001|>", "<|return|>",
                  "<|constrain|>", "<|reserved_200004|>", "<|channel|>", "<|start|>", "<|end|>", "<|message|>",
                  "<|reserved_200009|>", "<|reserved_200010|>", "<|reserved_200011|>", "<|call|>")


@dataclass(frozen=True)
class TinySpec:
    layers: int = 2
    hidden: int = 64
    intermediate: int = 64
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16
    experts: int = 8
    experts_per_token: int = 2
    sliding_window: int = 8
    shards: int = 2
    seed: int = 0


def write_tokenizer(folder: Path) -> int:
    """A byte-level BPE (one token per byte) plus the harmony specials; returns the vocab size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel

    alphabet = sorted(ByteLevel.alphabet(), key=lambda ch: _byte_of(ch))
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    tok.save(str(folder / "tokenizer.json"))
    return tok.get_vocab_size()


def _byte_of(ch: str) -> int:
    # GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256 + n.
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    code = ord(ch)
    if code in printable:
        return code
    others = [b for b in range(256) if b not in printable]
    return others[code - 256]


def make_tiny_checkpoint(folder: Path, spec: TinySpec = TinySpec()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = write_tokenizer(folder)
    ids = {t: 256 + i for i, t in enumerate(SPECIAL_TOKENS)}
    config = {
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "vocab_size": vocab,
        "hidden_size": spec.hidden, "intermediate_size": spec.intermediate, "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads, "num_key_value_heads": spec.kv_heads, "head_dim": spec.head_dim,
        "num_local_experts": spec.experts, "num_experts_per_tok": spec.experts_per_token,
        "experts_per_token": spec.experts_per_token, "sliding_window": spec.sliding_window,
        "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(spec.layers)],
        "rope_theta": 150000, "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                                                "beta_slow": 1.0, "truncate": False,
                                                "original_max_position_embeddings": 4096},
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "swiglu_limit": 7.0, "attention_bias": True,
        "attention_dropout": 0.0, "tie_word_embeddings": False, "hidden_act": "silu", "initializer_range": 0.02,
        "eos_token_id": ids["<|return|>"], "pad_token_id": ids["<|endoftext|>"], "use_cache": True,
        "torch_dtype": "bfloat16",
        "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
            "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [ids["<|return|>"], ids["<|call|>"]], "pad_token_id": ids["<|endoftext|>"]}))
    _write_weights(folder, _random_weights(spec, vocab), spec.shards)
    return folder


def _random_weights(spec: TinySpec, vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(spec.seed)

    def normal(*shape: int, std: float = 0.02) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * std).to(torch.bfloat16)

    h, d, e, i = spec.hidden, spec.head_dim, spec.experts, spec.intermediate
    w: dict[str, torch.Tensor] = {"model.embed_tokens.weight": normal(vocab, h, std=1.0),
                                  "model.norm.weight": (1 + normal(h, std=0.1).float()).to(torch.bfloat16),
                                  "lm_head.weight": normal(vocab, h, std=0.2)}
    for n in range(spec.layers):
        p = f"model.layers.{n}."
        for name, out in (("q_proj", spec.heads * d), ("k_proj", spec.kv_heads * d), ("v_proj", spec.kv_heads * d)):
            w[p + f"self_attn.{name}.weight"] = normal(out, h, std=0.1)
            w[p + f"self_attn.{name}.bias"] = normal(out, std=0.1)
        w[p + "self_attn.o_proj.weight"] = normal(h, spec.heads * d, std=0.1)
        w[p + "self_attn.o_proj.bias"] = normal(h, std=0.1)
        w[p + "self_attn.sinks"] = normal(spec.heads, std=1.0)
        w[p + "input_layernorm.weight"] = (1 + normal(h, std=0.1).float()).to(torch.bfloat16)
        w[p + "post_attention_layernorm.weight"] = (1 + normal(h, std=0.1).float()).to(torch.bfloat16)
        # Router weights large enough that the experts chosen are clear, not near-ties.
        w[p + "mlp.router.weight"] = normal(e, h, std=0.5)
        w[p + "mlp.router.bias"] = normal(e, std=0.5)
        gu_blocks, gu_scales = encode_rows(torch.randn(e, 2 * i, h, generator=g) * 0.1)
        dn_blocks, dn_scales = encode_rows(torch.randn(e, h, i, generator=g) * 0.1)
        w[p + "mlp.experts.gate_up_proj_blocks"] = gu_blocks.reshape(e, 2 * i, h // 32, 16)
        w[p + "mlp.experts.gate_up_proj_scales"] = gu_scales
        w[p + "mlp.experts.gate_up_proj_bias"] = normal(e, 2 * i, std=0.1)
        w[p + "mlp.experts.down_proj_blocks"] = dn_blocks.reshape(e, h, i // 32, 16)
        w[p + "mlp.experts.down_proj_scales"] = dn_scales
        w[p + "mlp.experts.down_proj_bias"] = normal(e, h, std=0.1)
    return w


def _write_weights(folder: Path, weights: dict[str, torch.Tensor], shards: int) -> None:
    from safetensors.torch import save_file

    names = sorted(weights)
    per = -(-len(names) // shards)
    weight_map, total = {}, 0
    for n in range(shards):
        part = names[n * per:(n + 1) * per]
        file = f"model-{n:05d}-of-{shards - 1:05d}.safetensors"
        save_file({k: weights[k].contiguous() for k in part}, str(folder / file), metadata={"format": "pt"})
        for k in part:
            weight_map[k] = file
            total += weights[k].numel() * weights[k].element_size()
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
