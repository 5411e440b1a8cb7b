"""The KV cache: per layer, the keys and values of the positions seen so far.

Sequences of a batch advance together (prompts are left-padded to one length), so positions are
*slots* shared by the batch; a sequence's own position is its slot minus its padding. Full layers
keep every slot; sliding layers keep only the last `window` slots, which is all their queries can
see (the window counts the current position, so `window` kept slots always suffice).

Keys and values live in preallocated buffers and each step writes only its own slots: appending
by concatenation would copy the whole cache at every token. A sliding layer's buffer holds two
windows; when it fills, the kept window moves to the front (one copy every `window` steps).
"""

from __future__ import annotations

import torch


class _LayerBuffer:
    """One layer's keys, values [B, KV, capacity, D] and slots [capacity]; [start, end) is live."""

    def __init__(self, like: torch.Tensor, capacity: int) -> None:
        b, kv, _, d = like.shape
        self.keys = like.new_empty(b, kv, capacity, d)
        self.values = like.new_empty(b, kv, capacity, d)
        self.slots = torch.empty(capacity, dtype=torch.long, device=like.device)
        self.start = self.end = 0

    @property
    def capacity(self) -> int:
        return int(self.keys.shape[2])

    def make_room(self, new: int) -> None:
        """Ensure `new` more slots fit after `end`: move the live part (what a sliding layer still
        keeps) to the front, and grow only if that is not enough."""
        if self.end + new <= self.capacity:
            return
        live = self.end - self.start
        # Grow only when compacting is not enough (doubling keeps appends amortised O(1)).
        grow = live + new > self.capacity
        size = max(live + new, 2 * self.capacity)
        for name, dim in (("keys", 2), ("values", 2), ("slots", 0)):
            old = getattr(self, name)
            part = old.narrow(dim, self.start, live).clone()  # clone: source and target may overlap
            target = old.new_empty(*old.shape[:dim], size, *old.shape[dim + 1:]) if grow else old
            target.narrow(dim, 0, live).copy_(part)
            setattr(self, name, target)
        self.start, self.end = 0, live

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.keys, self.values))


class KVCache:
    def __init__(self, layer_windows: list[int | None], padding: torch.Tensor, capacity: int = 256) -> None:
        """layer_windows: per layer, the sliding window or None for full attention.
        padding: [batch] number of left-padding slots of each sequence.
        capacity: slots to reserve for full layers (prompt plus new tokens, when known)."""
        self.windows = layer_windows
        self.padding = padding  # [B]
        self.padded = bool((padding > 0).any())  # without padding, one-token steps need no mask
        self.capacity = capacity
        self._buffers: list[_LayerBuffer | None] = [None] * len(layer_windows)
        self.length = 0  # slots seen so far (the next slot to fill)

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Add this step's keys/values [B, KV, T, D] at `slots` [T]; return everything the step's
        queries may attend to (kept + new) and its slots. Then trim sliding layers to the window."""
        t, window = keys.shape[2], self.windows[layer]
        buf = self._buffers[layer]
        if buf is None:
            size = self.capacity if window is None else 2 * window
            buf = self._buffers[layer] = _LayerBuffer(keys, max(size, t))
        buf.make_room(t)
        end = buf.end + t
        buf.keys[:, :, buf.end:end] = keys
        buf.values[:, :, buf.end:end] = values
        buf.slots[buf.end:end] = slots
        live = slice(buf.start, end)
        buf.end = end
        if window is not None:
            buf.start = max(buf.start, end - window)
        return buf.keys[:, :, live], buf.values[:, :, live], buf.slots[live]

    def advance(self, steps: int) -> None:
        self.length += steps

    def kept(self, layer: int) -> int:
        buf = self._buffers[layer]
        return 0 if buf is None else buf.end - buf.start

    def nbytes(self) -> int:
        return sum(buf.nbytes() for buf in self._buffers if buf is not None)
