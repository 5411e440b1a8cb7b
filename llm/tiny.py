"""Write a small random gpt-oss checkpoint in exactly the published layout: config.json with the
MXFP4 quantization_config, sharded safetensors with model.safetensors.index.json, bf16 weights,
uint8 MXFP4 expert blocks and scales, and a byte-level tokenizer.json with the harmony special
tokens. For tests, benchmarks, and trying the whole application without the 13 GB download.

Any shape, gpt-oss-20b's included (GPT_OSS_20B): the weights are drawn and written in pieces
(experts one at a time, straight to MXFP4), so memory stays a few MB whatever the model's size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

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
    vocab: int = 0  # the config's vocab_size: at least the tokenizer's (256 bytes + the specials)


#: gpt-oss-20b's exact shape (random weights): 24 layers, hidden and expert intermediate 2880,
#: 32 experts of which 4 per token, 64 query heads and 8 key/value heads of 64, vocabulary 201,088.
GPT_OSS_20B = TinySpec(layers=24, hidden=2880, intermediate=2880, heads=64, kv_heads=8, head_dim=64, experts=32,
                       experts_per_token=4, sliding_window=128, shards=3, vocab=201088)
#: Random values drawn (and encoded) at a time on the CPU: bounds the memory, and small pieces
#: encode several times faster than whole experts (they stay in the processor's cache).
CHUNK_VALUES = 1 << 16


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


def make_tiny_checkpoint(folder: Path, spec: TinySpec = TinySpec(), device: str = "cpu") -> Path:
    """Write the checkpoint, streaming: every tensor is generated in pieces of about
    CHUNK_VALUES values (experts one at a time, straight to MXFP4) and written at its place in
    its shard, so memory stays bounded whatever the shape (gpt-oss-20b's included). device:
    where the random values are drawn and encoded ("cuda" is much faster for large shapes; its
    random stream differs from the CPU's, so the same seed gives other weights there)."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = max(write_tokenizer(folder), spec.vocab)
    ids = {t: 256 + i for i, t in enumerate(SPECIAL_TOKENS)}
    (folder / "config.json").write_text(json.dumps(_config(spec, vocab, ids), indent=2))
    (folder / "generation_config.json").write_text(json.dumps(
        {"eos_token_id": [ids["<|return|>"], ids["<|call|>"]], "pad_token_id": ids["<|endoftext|>"]}))
    writer = _ShardedWriter(folder, _tensor_plan(spec, vocab), spec.shards)
    try:
        for name, offset, piece in _generate(spec, vocab, torch.device(device)):
            writer.write(name, offset, piece)
    finally:
        writer.close()
    return folder


def _config(spec: TinySpec, vocab: int, ids: dict[str, int]) -> dict[str, Any]:
    return {
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


def _tensor_plan(spec: TinySpec, vocab: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Every tensor's shape and dtype, known before any value exists (the shard headers come first)."""
    h, d, e, i = spec.hidden, spec.head_dim, spec.experts, spec.intermediate
    bf16, u8 = torch.bfloat16, torch.uint8
    plan: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
        "model.embed_tokens.weight": ((vocab, h), bf16), "model.norm.weight": ((h,), bf16),
        "lm_head.weight": ((vocab, h), bf16)}
    for n in range(spec.layers):
        p = f"model.layers.{n}."
        for name, out in (("q_proj", spec.heads * d), ("k_proj", spec.kv_heads * d), ("v_proj", spec.kv_heads * d)):
            plan[p + f"self_attn.{name}.weight"] = ((out, h), bf16)
            plan[p + f"self_attn.{name}.bias"] = ((out,), bf16)
        plan[p + "self_attn.o_proj.weight"] = ((h, spec.heads * d), bf16)
        plan[p + "self_attn.o_proj.bias"] = ((h,), bf16)
        plan[p + "self_attn.sinks"] = ((spec.heads,), bf16)
        plan[p + "input_layernorm.weight"] = ((h,), bf16)
        plan[p + "post_attention_layernorm.weight"] = ((h,), bf16)
        plan[p + "mlp.router.weight"] = ((e, h), bf16)
        plan[p + "mlp.router.bias"] = ((e,), bf16)
        x = p + "mlp.experts."
        plan[x + "gate_up_proj_blocks"] = ((e, 2 * i, h // 32, 16), u8)
        plan[x + "gate_up_proj_scales"] = ((e, 2 * i, h // 32), u8)
        plan[x + "gate_up_proj_bias"] = ((e, 2 * i), bf16)
        plan[x + "down_proj_blocks"] = ((e, h, i // 32, 16), u8)
        plan[x + "down_proj_scales"] = ((e, h, i // 32), u8)
        plan[x + "down_proj_bias"] = ((e, h), bf16)
    return plan


Piece = tuple[str, int, torch.Tensor]  # tensor name, byte offset within it, values


def _generate(spec: TinySpec, vocab: int, device: torch.device) -> Iterator[Piece]:
    """The weights in pieces, drawn from one generator in a fixed order. Large tensors come in
    row chunks of a multiple of 16 values: PyTorch's CPU normal sampler works in groups of 16,
    so the values equal those of one call for the whole tensor (the checkpoints written before
    streaming, same seed, are the same)."""
    g = torch.Generator(device).manual_seed(spec.seed)
    chunk = CHUNK_VALUES if device.type == "cpu" else 64 * CHUNK_VALUES

    def rows(name: str, n_rows: int, cols: int, std: float) -> Iterator[Piece]:
        step = max(16, chunk // cols // 16 * 16)
        for r0 in range(0, n_rows, step):
            n = min(step, n_rows - r0)
            yield name, r0 * cols * 2, (torch.randn(n, cols, generator=g, device=device) * std).to(torch.bfloat16)

    def small(name: str, size: int, std: float, plus_one: bool = False) -> Piece:
        values = (torch.randn(size, generator=g, device=device) * std).to(torch.bfloat16)
        return name, 0, (1 + values.float()).to(torch.bfloat16) if plus_one else values

    h, d, e, i = spec.hidden, spec.head_dim, spec.experts, spec.intermediate
    yield from rows("model.embed_tokens.weight", vocab, h, 1.0)
    yield small("model.norm.weight", h, 0.1, plus_one=True)
    yield from rows("lm_head.weight", vocab, h, 0.2)
    for n in range(spec.layers):
        p = f"model.layers.{n}."
        for name, out in (("q_proj", spec.heads * d), ("k_proj", spec.kv_heads * d), ("v_proj", spec.kv_heads * d)):
            yield from rows(p + f"self_attn.{name}.weight", out, h, 0.1)
            yield small(p + f"self_attn.{name}.bias", out, 0.1)
        yield from rows(p + "self_attn.o_proj.weight", h, spec.heads * d, 0.1)
        yield small(p + "self_attn.o_proj.bias", h, 0.1)
        yield small(p + "self_attn.sinks", spec.heads, 1.0)
        yield small(p + "input_layernorm.weight", h, 0.1, plus_one=True)
        yield small(p + "post_attention_layernorm.weight", h, 0.1, plus_one=True)
        # Router weights large enough that the experts chosen are clear, not near-ties.
        yield from rows(p + "mlp.router.weight", e, h, 0.5)
        yield small(p + "mlp.router.bias", e, 0.5)
        x = p + "mlp.experts."
        yield from _experts(x + "gate_up_proj", e, 2 * i, h, g, device, chunk)
        yield from _experts(x + "down_proj", e, h, i, g, device, chunk)
        yield from rows(x + "gate_up_proj_bias", e, 2 * i, 0.1)
        yield from rows(x + "down_proj_bias", e, h, 0.1)


def _experts(name: str, experts: int, out: int, inp: int, g: torch.Generator, device: torch.device,
             chunk: int) -> Iterator[Piece]:
    """Expert by expert, a few rows at a time: random values straight to MXFP4 blocks and scales."""
    step = max(16, chunk // inp // 16 * 16)
    for e in range(experts):
        for r0 in range(0, out, step):
            n = min(step, out - r0)
            blocks, scales = encode_rows(torch.randn(n, inp, generator=g, device=device) * 0.1)
            row = e * out + r0  # rows before this piece, all experts counted
            yield name + "_blocks", row * inp // 2, blocks
            yield name + "_scales", row * inp // 32, scales


_SAFETENSORS_DTYPE = {torch.bfloat16: "BF16", torch.uint8: "U8", torch.float32: "F32"}


class _ShardedWriter:
    """The published layout (model-0000n-of-0000m.safetensors and model.safetensors.index.json),
    written in place: each shard's header first (every tensor's dtype, shape and byte range are
    known from the plan), then the values of any tensor, in any order, in pieces, at their offsets."""

    def __init__(self, folder: Path, plan: dict[str, tuple[tuple[int, ...], torch.dtype]], shards: int) -> None:
        self.folder = folder
        names = sorted(plan)
        per = -(-len(names) // shards)
        self.where: dict[str, tuple[BinaryIO, int]] = {}  # tensor -> its shard's file, the tensor's first byte
        self.weight_map: dict[str, str] = {}
        self.total = 0
        self.files: list[BinaryIO] = []
        for n in range(shards):
            part = names[n * per:(n + 1) * per]
            file = f"model-{n:05d}-of-{shards - 1:05d}.safetensors"
            self._open_shard(folder / file, {k: plan[k] for k in part})
            self.weight_map.update(dict.fromkeys(part, file))

    def _open_shard(self, path: Path, plan: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> None:
        # Wider dtypes first, so every tensor starts aligned to its element size.
        order = sorted(plan, key=lambda k: (-plan[k][1].itemsize, k))
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offsets, start = {}, 0
        for name in order:
            shape, dtype = plan[name]
            size = math.prod(shape) * dtype.itemsize
            header[name] = {"dtype": _SAFETENSORS_DTYPE[dtype], "shape": list(shape),
                            "data_offsets": [start, start + size]}
            offsets[name], start = start, start + size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # the values start 8-byte aligned
        fh = open(path, "wb")  # closed by close(), once every piece is written
        self.files.append(fh)
        fh.write(len(raw).to_bytes(8, "little") + raw)
        fh.truncate(8 + len(raw) + start)
        for name, offset in offsets.items():
            self.where[name] = (fh, 8 + len(raw) + offset)
        self.total += start

    def write(self, name: str, offset: int, values: torch.Tensor) -> None:
        fh, first = self.where[name]
        fh.seek(first + offset)
        fh.write(values.detach().to("cpu").contiguous().view(torch.uint8).numpy().data)

    def close(self) -> None:
        for fh in self.files:
            fh.close()
        (self.folder / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": self.total}, "weight_map": self.weight_map}, indent=2))
