"""Generation: prefill, then token-by-token decode over a KV cache; several sequences at once;
tokens streamed as they come. Token ids only: text and the chat format live above."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from llm.model import GptOss

PREFILL_CHUNK = 512  # prompt positions per forward pass: bounds the attention scores' memory


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    greedy: bool = False
    stop_ids: tuple[int, ...] = field(default_factory=tuple)


def sample(logits: torch.Tensor, params: Sampling, generator: torch.Generator | None) -> torch.Tensor:
    """logits [B, V] -> token ids [B]. Greedy, or temperature then nucleus (top-p) sampling."""
    if params.greedy or params.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        drop = sorted_p.cumsum(dim=-1) - sorted_p >= params.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


class Engine:
    def __init__(self, model: GptOss, pad_id: int = 0) -> None:
        self.model = model
        self.pad_id = pad_id
        self.device = next(model.parameters()).device

    def stream(self, prompts: Sequence[Sequence[int]], params: Sampling,
               generator: torch.Generator | None = None) -> Iterator[list[int | None]]:
        """Yields, per step, one new token id per sequence (None once that sequence has stopped).
        A sequence stops after a stop token (which is yielded) or max_new_tokens."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        width = max(len(p) for p in prompts)
        padding = torch.tensor([width - len(p) for p in prompts], device=self.device)
        tokens = torch.tensor([[self.pad_id] * (width - len(p)) + list(p) for p in prompts], device=self.device)
        cache = self.model.new_cache(padding, capacity=width + params.max_new_tokens)
        logits = None
        for start in range(0, width, PREFILL_CHUNK):
            logits = self.model(tokens[:, start:start + PREFILL_CHUNK], cache)
        assert logits is not None
        alive = [True] * len(prompts)
        stop = set(params.stop_ids)
        for n in range(params.max_new_tokens):
            next_ids = sample(logits, params, generator)  # [B]
            step: list[int | None] = []
            for i, tok in enumerate(next_ids.tolist()):
                step.append(tok if alive[i] else None)
                if alive[i] and tok in stop:
                    alive[i] = False
            yield step
            if not any(alive) or n + 1 == params.max_new_tokens:
                return
            # Stopped sequences keep stepping with padding (their output is ignored): the batch
            # advances in lockstep so the cache stays one tensor per layer.
            feed = [t if t is not None else self.pad_id for t in step]
            logits = self.model(torch.tensor(feed, device=self.device)[:, None], cache)

    def generate(self, prompts: Sequence[Sequence[int]], params: Sampling,
                 generator: torch.Generator | None = None) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in prompts]
        for step in self.stream(prompts, params, generator):
            for i, tok in enumerate(step):
                if tok is not None:
                    out[i].append(tok)
        return out
