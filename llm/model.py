"""The gpt-oss transformer, in the order it runs: config, norm, rotary, attention with sinks,
swiglu, mixture of experts, block, model. Token ids in, logits out; text lives above (harmony).

Checked against transformers' `modeling_gpt_oss.py` (tests/test_llm_reference.py compares logits).
Shapes: B batch, T new positions, S attended positions, H query heads, KV key/value heads,
D head dim, E experts, K experts per token, N tokens (B * T), V vocabulary.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from llm.config import GptOssConfig
from llm.experts import ExpertWeights
from llm.kv_cache import KVCache


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
    def __init__(self, config: GptOssConfig) -> None:
        super().__init__()
        self.register_buffer("inv_freq", yarn_inverse_frequencies(config), persistent=False)
        self.concentration = config.yarn_concentration()  # scales cos and sin alike

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [B, T] -> cos, sin [B, T, D/2]."""
        freqs = positions[..., None].float() * self.inv_freq.float()
        return (freqs.cos() * self.concentration).to(dtype), (freqs.sin() * self.concentration).to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, heads, T, D]; rotates the first half of the head against the second (not pairs)."""
    cos, sin = cos[:, None], sin[:, None]  # [B, 1, T, D/2]
    first, second = torch.chunk(x, 2, dim=-1)
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)


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

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, slots: torch.Tensor,
                cache: KVCache) -> torch.Tensor:
        b, t, _ = x.shape  # x [B, T, hidden]
        q = self.q_proj(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)  # [B, H, T, D]
        k = self.k_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)  # [B, KV, T, D]
        v = self.v_proj(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        k, v, key_slots = cache.update(self.layer, k, v, slots)  # [B, KV, S, D], [S]
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)  # [B, H, S, D]
        v = v.repeat_interleave(group, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scale  # [B, H, T, S]
        scores = scores + self._mask(slots, key_slots, cache.padding, scores.dtype)
        # The sink joins the softmax as one more column, then is dropped: it takes probability
        # mass and gives no value.
        sinks = self.sinks.to(scores.dtype).reshape(1, -1, 1, 1).expand(b, -1, t, 1)
        logits = torch.cat([scores, sinks], dim=-1)
        logits = logits - logits.max(dim=-1, keepdim=True).values
        probs = F.softmax(logits, dim=-1)[..., :-1]
        out = torch.matmul(probs.to(v.dtype), v)  # [B, H, T, D]
        return self.o_proj(out.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))

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


# ---- swiglu ---------------------------------------------------------------------------------
def clamped_swiglu(gate_up: torch.Tensor, limit: float, alpha: float) -> torch.Tensor:
    """[N, 2I] interleaved (even = gate, odd = linear) -> [N, I]."""
    gate, linear = gate_up[..., ::2], gate_up[..., 1::2]
    gate = gate.clamp(max=limit)
    linear = linear.clamp(min=-limit, max=limit)
    return (linear + 1) * (gate * torch.sigmoid(gate * alpha))


# ---- mixture of experts ---------------------------------------------------------------------
class MoE(nn.Module):
    def __init__(self, config: GptOssConfig, experts: ExpertWeights) -> None:
        super().__init__()
        self.router = nn.Linear(config.hidden_size, config.num_experts, bias=True)
        self.top_k = config.experts_per_token
        self.experts = experts  # MXFP4, decoded on demand
        self.limit, self.alpha = config.swiglu_limit, config.swiglu_alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # [N, hidden]
        logits = self.router(x)  # [N, E]
        top_logits, top_experts = torch.topk(logits, self.top_k, dim=-1)  # [N, K]
        weights = F.softmax(top_logits, dim=-1, dtype=top_logits.dtype)  # over the K chosen only
        out = torch.zeros_like(x)
        for e in torch.unique(top_experts).tolist():  # ascending, as the reference sums
            token, slot = torch.where(top_experts == e)
            w = self.experts.get(e, x.dtype)
            h = clamped_swiglu(F.linear(x[token], w.gate_up, w.gate_up_bias), self.limit, self.alpha)
            y = F.linear(h, w.down, w.down_bias)  # [n, hidden], down bias added per expert
            out.index_add_(0, token, y * weights[token, slot, None])
        return out.reshape(shape)


# ---- block ----------------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self, config: GptOssConfig, layer: int, experts: ExpertWeights) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MoE(config, experts)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, slots: torch.Tensor,
                cache: KVCache) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, slots, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


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

    def new_cache(self, padding: torch.Tensor) -> KVCache:
        windows = [layer.self_attn.window for layer in self.layers]
        return KVCache(windows, padding)

    @torch.inference_mode()
    def forward(self, tokens: torch.Tensor, cache: KVCache, last_only: bool = True) -> torch.Tensor:
        """tokens [B, T] at the cache's next T slots -> logits [B, V] (last position) or [B, T, V]."""
        b, t = tokens.shape
        slots = torch.arange(cache.length, cache.length + t, device=tokens.device)  # [T]
        positions = (slots[None, :] - cache.padding[:, None]).clamp(min=0)  # [B, T] each sequence's own
        x = self.embed_tokens(tokens)  # [B, T, hidden]
        cos, sin = self.rotary(positions, x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, slots, cache)
        cache.advance(t)
        if last_only:
            x = x[:, -1]
        return self.lm_head(self.norm(x)).float()
