"""The KV cache: per layer, the keys and values of the positions seen so far.

Sequences of a batch advance together (prompts are left-padded to one length), so positions are
*slots* shared by the batch; a sequence's own position is its slot minus its padding. Full layers
keep every slot; sliding layers keep only the last `window` slots, which is all their queries can
see (the window counts the current position, so `window` kept slots always suffice).
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, layer_windows: list[int | None], padding: torch.Tensor) -> None:
        """layer_windows: per layer, the sliding window or None for full attention.
        padding: [batch] number of left-padding slots of each sequence."""
        self.windows = layer_windows
        self.padding = padding  # [B]
        self.keys: list[torch.Tensor | None] = [None] * len(layer_windows)  # [B, KV, S, D]
        self.values: list[torch.Tensor | None] = [None] * len(layer_windows)
        self.slots: list[torch.Tensor | None] = [None] * len(layer_windows)  # [S] slot of each kept key
        self.length = 0  # slots seen so far (the next slot to fill)

    def update(self, layer: int, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Add this step's keys/values [B, KV, T, D] at `slots` [T]; return everything the step's
        queries may attend to (kept + new) and its slots. Then trim sliding layers to the window."""
        old_k, old_v, old_s = self.keys[layer], self.values[layer], self.slots[layer]
        if old_k is not None:
            keys = torch.cat([old_k, keys], dim=2)
            values = torch.cat([old_v, values], dim=2)  # type: ignore[list-item]
            slots = torch.cat([old_s, slots])  # type: ignore[list-item]
        window = self.windows[layer]
        if window is not None and keys.shape[2] > window:
            self.keys[layer], self.values[layer], self.slots[layer] = (
                keys[:, :, -window:], values[:, :, -window:], slots[-window:])
        else:
            self.keys[layer], self.values[layer], self.slots[layer] = keys, values, slots
        return keys, values, slots

    def advance(self, steps: int) -> None:
        self.length += steps

    def kept(self, layer: int) -> int:
        k = self.keys[layer]
        return 0 if k is None else int(k.shape[2])

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)
