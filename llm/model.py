"""The gpt-oss transformer, in the order it runs: config, norm, rotary, attention with sinks,
swiglu, mixture of experts, block, model. Token ids in, logits out; text lives above (harmony).

Checked against transformers' `modeling_gpt_oss.py` (tests/test_llm_reference.py compares logits).
Shapes: B batch, T new positions, S attended positions, H query heads, KV key/value heads,
D head dim, E experts, K experts per token, N tokens (B * T), V vocabulary.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from llm import cpu_kernel
from llm.config import GptOssConfig
from llm.experts import ExpertWeights
from llm.kv_cache import KVCache, SlotCache


@dataclass(frozen=True)
class StepPlan:
    """Where one continuous-batching step's N flattened tokens belong: the first `decoding` are
    one token each of the sequences in `slots` at `positions`; then each chunk (slot, offset
    into the N, count, first position) is a piece of one sequence's prompt."""
    decoding: int
    slots: torch.Tensor  # [decoding] long
    positions: torch.Tensor  # [N] long: every token's own position
    chunks: tuple[tuple[int, int, int, int], ...]
    prefix: bool  # slots == 0..decoding-1: the cache is sliced, not gathered
    longest: int  # max decoding position + 1

    @functools.cached_property
    def decode_allowed(self) -> torch.Tensor:
        """[decoding, longest]: cache index j holds a key decoding sequence i may see where
        j <= its position; once per step, for every layer (a sliding layer's ring of `window`
        takes the first min(window, longest) columns)."""
        return torch.arange(self.longest, device=self.positions.device)[None] <= self.positions[:self.decoding, None]


# ---- norm -----------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """Computed in float32 whatever the activations' dtype; the weight is kept in float32."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, dtype=torch.float32), requires_grad=False)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., hidden]
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * h).to(x.dtype)


# ---- rotary ---------------------------------------------------------------------------------
def yarn_inverse_frequencies(config: GptOssConfig) -> torch.Tensor:
    """[D/2] inverse frequencies: YaRN blends interpolated (slow) and original (fast) rotations
    with a linear ramp between two dimension bounds, which gpt-oss does not round."""
    dim, base = config.head_dim, config.rope_theta
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)
    extrapolation = 1.0 / pos_freqs
    yarn = config.yarn
    if yarn is None:
        return extrapolation
    interpolation = 1.0 / (yarn.factor * pos_freqs)

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(yarn.original_context / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(yarn.beta_fast), correction_dim(yarn.beta_slow)
    if yarn.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    keep_original = 1 - ramp
    return interpolation * (1 - keep_original) + extrapolation * keep_original


class Rotary(nn.Module):
    inv_freq: torch.Tensor  # a buffer (register_buffer), typed for mypy

    def __init__(self, config: GptOssConfig) -> None:
        super().__init__()
        self.register_buffer("inv_freq", yarn_inverse_frequencies(config), persistent=False)
        self.concentration = config.yarn_concentration()  # scales cos and sin alike

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [B, T] -> cos, signed sin [B, 1, T, D], ready for `apply_rotary` on any
        number of heads: cos repeats over both halves, sin is negated on the first."""
        freqs = positions[..., None].float() * self.inv_freq.float()  # [B, T, D/2]
        cos, sin = freqs.cos() * self.concentration, freqs.sin() * self.concentration
        return (torch.cat((cos, cos), dim=-1)[:, None].to(dtype),
                torch.cat((-sin, sin), dim=-1)[:, None].to(dtype))


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """x [B, heads, T, D]; rotates the first half of the head against the second (not pairs):
    (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)."""
    first, second = torch.chunk(x, 2, dim=-1)
    return x * cos + torch.cat((second, first), dim=-1) * signed_sin


# ---- attention with sinks -------------------------------------------------------------------
class Attention(nn.Module):
    def __init__(self, config: GptOssConfig, layer: int) -> None:
        super().__init__()
        h, d = config.hidden_size, config.head_dim
        self.layer, self.heads, self.kv_heads, self.head_dim = layer, config.num_heads, config.num_kv_heads, d
        self.q_proj = nn.Linear(h, config.num_heads * d, bias=True)
        self.k_proj = nn.Linear(h, config.num_kv_heads * d, bias=True)
        self.v_proj = nn.Linear(h, config.num_kv_heads * d, bias=True)
        self.o_proj = nn.Linear(config.num_heads * d, h, bias=True)
        self.sinks = nn.Parameter(torch.zeros(config.num_heads), requires_grad=False)  # one logit per head
        sliding = config.layer_types[layer] == "sliding_attention"
        self.window = config.sliding_window if sliding else None
        self.scale = d ** -0.5
        self.qkv_weight: torch.Tensor | None = None  # q, k, v stacked: one matmul per step (fuse_qkv)
        self.qkv_bias: torch.Tensor | None = None

    def fuse_qkv(self) -> None:
        """Stack the q, k and v projections into one weight, once the checkpoint is loaded; the
        three parameters become views into it, so memory does not grow."""
        projections = (self.q_proj, self.k_proj, self.v_proj)
        self.qkv_weight = torch.cat([p.weight.data for p in projections])
        self.qkv_bias = torch.cat([p.bias.data for p in projections])
        start = 0
        for p in projections:
            rows = p.weight.shape[0]
            p.weight.data, p.bias.data = self.qkv_weight[start:start + rows], self.qkv_bias[start:start + rows]
            start += rows

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], slots: torch.Tensor,
                cache: KVCache, masks: dict[int | None, torch.Tensor | None]) -> torch.Tensor:
        b, t, _ = x.shape  # x [B, T, hidden]
        h, kv, d = self.heads, self.kv_heads, self.head_dim
        assert self.qkv_weight is not None, "call fuse_qkv() after loading the weights"
        qkv = F.linear(x, self.qkv_weight, self.qkv_bias)  # [B, T, (H + 2 KV) * D]
        qk = qkv[..., :(h + kv) * d].view(b, t, h + kv, d).transpose(1, 2)  # [B, H + KV, T, D]
        q, k = apply_rotary(qk, *rope).split([h, kv], dim=1)  # [B, H, T, D], [B, KV, T, D]
        v = qkv[..., (h + kv) * d:].view(b, t, kv, d).transpose(1, 2)  # [B, KV, T, D]
        k, v, key_slots = cache.update(self.layer, k, v, slots)  # [B, KV, S, D], [S]
        if t == 1 and self.window is not None and k.shape[2] > self.window:
            # One query sees exactly the last `window` keys: keep those, no mask needed.
            k, v, key_slots = k[:, :, -self.window:], v[:, :, -self.window:], key_slots[-self.window:]
        # Query heads of one group share a key head: [B, KV, G * T, D] against [B, KV, S, D].
        scores = torch.matmul(q.reshape(b, kv, -1, d), k.transpose(2, 3)) * self.scale
        scores = scores.view(b, h, t, -1)  # [B, H, T, S]
        if t > 1 or cache.padded:
            if self.window not in masks:
                masks[self.window] = self._mask(slots, key_slots, cache.padding, scores.dtype)
            scores = scores + masks[self.window]
        # The sink joins the softmax as one more column, then is dropped: it takes probability
        # mass and gives no value.
        sinks = self.sinks.to(scores.dtype).view(1, h, 1, 1).expand(b, h, t, 1)
        probs = F.softmax(torch.cat([scores, sinks], dim=-1), dim=-1)[..., :-1]
        out = torch.matmul(probs.reshape(b, kv, -1, probs.shape[-1]).to(v.dtype), v)  # [B, KV, G * T, D]
        out = out.view(b, h, t, d).transpose(1, 2).reshape(b, t, h * d)
        return self.o_proj(out)

    def _mask(self, q_slots: torch.Tensor, k_slots: torch.Tensor, padding: torch.Tensor,
              dtype: torch.dtype) -> torch.Tensor:
        """[B, 1, T, S] additive: a query sees earlier keys, within the window on sliding layers
        (the window counts the query itself), and never a padding slot."""
        q, k = q_slots[:, None], k_slots[None, :]  # [T, 1], [1, S]
        allowed = k <= q
        if self.window is not None:
            allowed = allowed & (k > q - self.window)
        allowed = allowed[None, None] & (k_slots[None, None, None, :] >= padding[:, None, None, None])
        return torch.where(allowed, 0.0, torch.finfo(dtype).min).to(dtype)


    def step(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], plan: StepPlan,
             cache: SlotCache, kernel: bool = False) -> torch.Tensor:
        """Continuous batching: x [N, hidden], the new tokens of several sequences flattened
        (decoding ones first, one token each, then prefill chunks) -> [N, hidden]. The
        projections run on all N at once; attention runs per sequence against its own slot
        (kernel: decoding ones in one call of the C kernel, on the CPU in float32)."""
        n = x.shape[0]
        h, kv, d = self.heads, self.kv_heads, self.head_dim
        assert self.qkv_weight is not None, "call fuse_qkv() after loading the weights"
        qkv = F.linear(x, self.qkv_weight, self.qkv_bias)  # [N, (H + 2 KV) * D]
        qk = qkv[:, :(h + kv) * d].view(1, n, h + kv, d).transpose(1, 2)  # [1, H + KV, N, D]
        q, k = apply_rotary(qk, *rope).split([h, kv], dim=1)  # [1, H, N, D], [1, KV, N, D]
        v = qkv[:, (h + kv) * d:].view(n, kv, d)
        out = x.new_empty(n, h * d)
        b = plan.decoding
        lib = cpu_kernel.load() if kernel and b and x.dtype == torch.float32 and x.device.type == "cpu" else None
        if lib is not None:  # one C call: write the new keys, attend (llm/cpu_kernel.c)
            key_buffer, value_buffer = cache.buffers(self.layer, v, plan.longest)
            attended = cpu_kernel.attend_decode(
                lib, q[0, :, :b].transpose(0, 1).contiguous(), k[0, :, :b].transpose(0, 1).contiguous(),
                v[:b].contiguous(), key_buffer, value_buffer, plan.slots, plan.positions[:b], self.window,
                self.sinks.float().contiguous(), self.scale)
            out[:b] = attended.reshape(b, h * d)
        elif b:
            keys, values = cache.decode(self.layer, plan.slots, plan.positions[:b], k[0, :, :b].transpose(0, 1),
                                        v[:b], plan.prefix, plan.longest)  # [B, KV, S, D]
            allowed = plan.decode_allowed[:, :keys.shape[2]]  # [B, S]
            q_b = q[0, :, :b].transpose(0, 1).reshape(b, kv, h // kv, d)  # [B, KV, G, D]
            out[:b] = self._attend(q_b, keys, values, allowed[:, None, None]).reshape(b, h * d)
        for slot, offset, count, start in plan.chunks:
            part = slice(offset, offset + count)
            keys, values, key_pos = cache.prefill(self.layer, slot, start, k[0, :, part],
                                                  v[part].transpose(0, 1))  # [KV, S, D], [S]
            q_pos = torch.arange(start, start + count, device=x.device)[:, None]  # [T, 1]
            allowed = (key_pos[None] <= q_pos) & (key_pos[None] >= 0)
            if self.window is not None:
                allowed = allowed & (key_pos[None] > q_pos - self.window)
            q_c = q[0, :, part].reshape(kv, h // kv * count, d)[None]  # [1, KV, G * T, D]
            attended = self._attend(q_c, keys[None], values[None], allowed[None, None].repeat(1, 1, h // kv, 1)
                                    .view(1, 1, h // kv * count, -1))  # [1, KV, G * T, D]
            out[part] = attended.view(h, count, d).transpose(0, 1).reshape(count, h * d)
        return self.o_proj(out)

    def _attend(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, allowed: torch.Tensor
                ) -> torch.Tensor:
        """q [B, KV, Q, D] (Q: the query rows of a key head's group), keys and values [B, KV, S, D],
        allowed broadcastable to [B, KV, Q, S] -> [B, KV, Q, D]; with the sink column, as forward."""
        scores = torch.matmul(q, keys.transpose(2, 3)) * self.scale  # [B, KV, Q, S]
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        b, kv, rows, _ = scores.shape
        group = self.heads // kv
        sinks = self.sinks.to(scores.dtype).view(1, kv, group, 1, 1).expand(b, kv, group, rows // group, 1)
        probs = F.softmax(torch.cat([scores, sinks.reshape(b, kv, rows, 1)], dim=-1), dim=-1)[..., :-1]
        return torch.matmul(probs.to(values.dtype), values)


# ---- swiglu ---------------------------------------------------------------------------------
def clamped_swiglu(gate_up: torch.Tensor, limit: float, alpha: float) -> torch.Tensor:
    """[N, 2I] interleaved (even = gate, odd = linear) -> [N, I]."""
    gate, linear = gate_up[..., ::2], gate_up[..., 1::2]
    gate = gate.clamp(max=limit)
    linear = linear.clamp(min=-limit, max=limit)
    return (linear + 1) * (gate * torch.sigmoid(gate * alpha))


# ---- mixture of experts ---------------------------------------------------------------------
# Above this, decoded experts and PyTorch's matrix multiply are faster, if every expert is already
# decoded (8 layers of hidden 512, 32 experts, one thread: 128 tokens 12.8 ms in C against 18.8,
# 256 tokens 30.9 against 27.3).
BATCH_KERNEL_TOKENS = 128


class MoE(nn.Module):
    def __init__(self, config: GptOssConfig, experts: ExpertWeights) -> None:
        super().__init__()
        self.router = nn.Linear(config.hidden_size, config.num_experts, bias=True)
        self.top_k = config.experts_per_token
        self.experts = experts  # MXFP4, decoded on demand
        self.limit, self.alpha = config.swiglu_limit, config.swiglu_alpha

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, hidden] -> each token's experts [N, K] and their weights [N, K]."""
        logits = self.router(x)  # [N, E]
        top_logits, top_experts = torch.topk(logits, self.top_k, dim=-1)  # [N, K]
        return top_experts, F.softmax(top_logits, dim=-1, dtype=top_logits.dtype)  # over the K chosen only

    def forward(self, x: torch.Tensor, batch_kernel: bool = False) -> torch.Tensor:
        """batch_kernel (continuous batching's steps): on the CPU in float32 with the C kernel, 2
        to BATCH_KERNEL_TOKENS tokens go through it straight from MXFP4, each chosen expert read
        once for all the tokens routed to it; otherwise (one token, GPU, bfloat16, large prefill
        chunks) the paths below decide."""
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # [N, hidden]
        top_experts, weights = self.route(x)
        if batch_kernel and 1 < x.shape[0] <= BATCH_KERNEL_TOKENS:
            batched = self.experts.batch(x, top_experts, weights, self.limit, self.alpha)
            if batched is not None:
                return batched.reshape(shape)
        fused = self.experts.fused(x, top_experts, weights, self.limit, self.alpha)
        if fused is not None:  # CUDA: Triton kernels straight from MXFP4 (llm/triton_moe.py)
            return fused.reshape(shape)
        if x.shape[0] == 1:
            return self._one_token(x, top_experts[0], weights[0]).reshape(shape)
        out = torch.zeros_like(x)
        for e in torch.unique(top_experts).tolist():  # ascending, as the reference sums
            token, slot = torch.where(top_experts == e)
            w = self.experts.get(e, x.dtype)
            h = clamped_swiglu(F.linear(x[token], w.gate_up, w.gate_up_bias), self.limit, self.alpha)
            y = F.linear(h, w.down, w.down_bias)  # [n, hidden], down bias added per expert
            out.index_add_(0, token, y * weights[token, slot, None])
        return out.reshape(shape)

    def _one_token(self, x: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Decoding one sequence: x [1, hidden], its K experts and weights [K] -> [1, hidden].
        The same sum as above, in a few large operations instead of one small one per expert."""
        order = torch.argsort(experts)  # ascending, as the reference sums
        experts, weights = experts[order], weights[order]
        direct = self.experts.one_token(x[0], experts, weights, self.limit, self.alpha)
        if direct is not None:  # float32 on the CPU: straight from MXFP4 (llm/cpu_kernel.c)
            return direct[None]
        chosen = [self.experts.get(e, x.dtype) for e in experts.tolist()]
        gate_up = torch.cat([F.linear(x, w.gate_up, w.gate_up_bias) for w in chosen])  # [K, 2I]
        h = clamped_swiglu(gate_up, self.limit, self.alpha)  # [K, I]
        down = torch.cat([F.linear(h[j:j + 1], w.down, w.down_bias) for j, w in enumerate(chosen)])  # [K, hidden]
        return weights[None] @ down  # [1, hidden]


# ---- block ----------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, config: GptOssConfig, layer: int, experts: ExpertWeights) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MoE(config, experts)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], slots: torch.Tensor,
                cache: KVCache, masks: dict[int | None, torch.Tensor | None]) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, slots, cache, masks)
        return x + self.mlp(self.post_attention_layernorm(x))

    def step(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], plan: StepPlan,
             cache: SlotCache) -> torch.Tensor:
        x = x + self.self_attn.step(self.input_layernorm(x), rope, plan, cache, self.mlp.experts.use_kernel)
        return x + self.mlp(self.post_attention_layernorm(x), batch_kernel=True)


# ---- model ----------------------------------------------------------------------------------
class GptOss(nn.Module):
    def __init__(self, config: GptOssConfig, experts: list[ExpertWeights]) -> None:
        super().__init__()
        assert len(experts) == config.num_layers
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, i, experts[i]) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)  # untied
        self.rotary = Rotary(config)

    def blocks(self) -> list[Block]:
        """The layers, typed: iterating an nn.ModuleList gives plain Modules."""
        return cast(list[Block], list(self.layers))

    def fuse(self) -> GptOss:
        """After loading: one q/k/v matmul per attention layer."""
        for layer in self.blocks():
            layer.self_attn.fuse_qkv()
        return self

    def new_cache(self, padding: torch.Tensor, capacity: int = 256) -> KVCache:
        windows = [layer.self_attn.window for layer in self.blocks()]
        return KVCache(windows, padding, capacity)

    def new_slot_cache(self, slots: int, capacity: int = 256) -> SlotCache:
        return SlotCache([layer.self_attn.window for layer in self.blocks()], slots, capacity)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, plan: StepPlan, cache: SlotCache) -> torch.Tensor:
        """Continuous batching: the new tokens [N] of several sequences (see StepPlan) -> logits
        [decoding + chunks, V] at each sequence's last new token."""
        x = self.embed_tokens(tokens)  # [N, hidden]
        rope = self.rotary(plan.positions[None], x.dtype)  # [1, 1, N, D]
        for layer in self.blocks():
            x = layer.step(x, rope, plan, cache)
        last = list(range(plan.decoding)) + [offset + count - 1 for _, offset, count, _ in plan.chunks]
        x = x[torch.tensor(last, device=x.device)]
        return self.lm_head(self.norm(x)).float()

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, cache: KVCache, last_only: bool = True) -> torch.Tensor:
        """tokens [B, T] at the cache's next T slots -> logits [B, V] (last position) or [B, T, V]."""
        b, t = tokens.shape
        slots = torch.arange(cache.length, cache.length + t, device=tokens.device)  # [T]
        positions = (slots[None, :] - cache.padding[:, None]).clamp(min=0)  # [B, T] each sequence's own
        x = self.embed_tokens(tokens)  # [B, T, hidden]
        rope = self.rotary(positions, x.dtype)
        masks: dict[int | None, torch.Tensor | None] = {}  # per window size, shared by its layers
        for layer in self.layers:
            x = layer(x, rope, slots, cache, masks)
        cache.advance(t)
        if last_only:
            x = x[:, -1]
        return self.lm_head(self.norm(x)).float()
