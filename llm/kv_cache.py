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


class SlotCache:
    """Keys and values of many independent sequences (continuous batching), one slot each.

    Unlike KVCache, sequences do not advance together: each has its own positions, given by the
    caller at every step. Per layer one buffer [slots, KV, capacity, D]: a full layer keeps
    position p at index p (the capacity grows by doubling when a sequence needs it); a sliding
    layer is a ring of `window` entries, position p at index p % window. The ring's order does
    not matter to attention: keys are stored after rotary, and softmax does not care about order.
    """

    def __init__(self, layer_windows: list[int | None], slots: int, capacity: int = 256) -> None:
        self.windows = layer_windows
        self.slots = slots
        self.capacity = capacity
        self.keys: list[torch.Tensor | None] = [None] * len(layer_windows)
        self.values: list[torch.Tensor | None] = [None] * len(layer_windows)

    def buffers(self, layer: int, like: torch.Tensor, needed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's buffers, made on first use (like: [n, KV, D] new keys) and grown so that
        index `needed - 1` exists (full layers only)."""
        keys, values, window = self.keys[layer], self.values[layer], self.windows[layer]
        if keys is None or values is None:
            size = window if window is not None else max(self.capacity, needed)
            keys = like.new_zeros(self.slots, like.shape[1], size, like.shape[2])
            values = torch.zeros_like(keys)
        elif window is None and needed > keys.shape[2]:
            size = max(needed, 2 * keys.shape[2])
            grown = [t.new_zeros(*t.shape[:2], size, t.shape[3]) for t in (keys, values)]
            for old, new in zip((keys, values), grown):
                new[:, :, :old.shape[2]] = old
            keys, values = grown
        self.keys[layer], self.values[layer] = keys, values
        return keys, values

    def decode(self, layer: int, slots: torch.Tensor, positions: torch.Tensor, keys: torch.Tensor,
               values: torch.Tensor, prefix: bool, longest: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One new key/value [B, KV, D] per sequence at its position [B] in its slot [B]; returns
        each sequence's keys and values [B, KV, S, D] (index j valid where j <= its position).
        prefix: the slots are 0..B-1, so the buffers are sliced, not gathered. longest: the
        largest position + 1."""
        window = self.windows[layer]
        k_buf, v_buf = self.buffers(layer, keys, longest)
        index = positions if window is None else positions % window
        k_buf[slots, :, index] = keys
        v_buf[slots, :, index] = values
        seen = longest if window is None else min(window, longest)
        if prefix:
            b = slots.shape[0]
            return k_buf[:b, :, :seen], v_buf[:b, :, :seen]
        return k_buf[slots, :, :seen], v_buf[slots, :, :seen]

    def prefill(self, layer: int, slot: int, start: int, keys: torch.Tensor, values: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """T new keys/values [KV, T, D] of one sequence at positions start..start+T-1; returns
        the keys and values its queries may need [KV, S, D] and their positions [S] (-1: empty)."""
        window, t = self.windows[layer], keys.shape[1]
        k_buf, v_buf = self.buffers(layer, keys.transpose(0, 1), start + t)
        if window is None:
            k_buf[slot, :, start:start + t] = keys
            v_buf[slot, :, start:start + t] = values
            return k_buf[slot, :, :start + t], v_buf[slot, :, :start + t], torch.arange(start + t, device=keys.device)
        # The ring before this chunk, with each entry's position (the latest p < start with
        # p % window == index), then the chunk itself; the chunk's last `window` go in the ring.
        index = torch.arange(window, device=keys.device)
        ring_positions = start - 1 - torch.remainder(start - 1 - index, window)
        all_k = torch.cat([k_buf[slot], keys], dim=1)
        all_v = torch.cat([v_buf[slot], values], dim=1)
        positions = torch.cat([ring_positions, torch.arange(start, start + t, device=keys.device)])
        keep = min(t, window)
        new_index = torch.arange(start + t - keep, start + t, device=keys.device) % window
        k_buf[slot, :, new_index] = keys[:, t - keep:]
        v_buf[slot, :, new_index] = values[:, t - keep:]
        return all_k, all_v, positions

    def move(self, source: int, target: int) -> None:
        """Copy one slot's keys and values to another (compacting the running batch)."""
        for buf in (*self.keys, *self.values):
            if buf is not None:
                buf[target] = buf[source]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values) if t is not None)
