"""MXFP4 decoding: pure, chunked functions.

Layout (Hugging Face gpt-oss): `*_blocks` uint8 [experts, out, in/32, 16] holds two FP4 (e2m1)
values per byte, low nibble first; `*_scales` uint8 [experts, out, in/32] holds one E8M0 exponent
(bias 127) per 32 values. value = FP4[nibble] * 2**(scale - 127).

The arithmetic follows transformers' `convert_moe_packed_tensors` step for step (table lookup in
the target dtype, then `ldexp`), so results agree bit for bit.
"""

from __future__ import annotations

import torch

FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
ROWS_PER_CHUNK = 1 << 16  # rows of 32 values decoded at a time: bounds the temporary index tensors


def decode_rows(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype,
                rows_per_chunk: int = ROWS_PER_CHUNK) -> torch.Tensor:
    """[..., G, 16] uint8 blocks and [..., G] uint8 scales -> [..., G * 32] values in `dtype`,
    in the checkpoint's (out, in) orientation."""
    assert blocks.dtype == torch.uint8 and scales.dtype == torch.uint8, (blocks.dtype, scales.dtype)
    assert blocks.shape[:-1] == scales.shape, (blocks.shape, scales.shape)
    *prefix, groups, width = blocks.shape
    rows = blocks.reshape(-1, width)
    exps = scales.reshape(-1, 1).to(torch.int32) - 127
    lut = torch.tensor(FP4_VALUES, dtype=dtype, device=blocks.device)
    out = torch.empty(rows.shape[0], width * 2, dtype=dtype, device=blocks.device)
    for r0 in range(0, rows.shape[0], rows_per_chunk):
        r1 = min(r0 + rows_per_chunk, rows.shape[0])
        blk, sub = rows[r0:r1], out[r0:r1]
        sub[:, 0::2] = lut[(blk & 0x0F).to(torch.int)]
        sub[:, 1::2] = lut[(blk >> 4).to(torch.int)]
        torch.ldexp(sub, exps[r0:r1], out=sub)
    return out.reshape(*prefix, groups * width * 2)


def decode_expert(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One expert's weight: [out, in/32, 16] + [out, in/32] -> [out, in] (for x @ W.T)."""
    return decode_rows(blocks, scales, dtype)


def decode_all(blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Every expert, in transformers' parameter orientation: [experts, in, out]."""
    return decode_rows(blocks, scales, dtype).transpose(1, 2).contiguous()


def encode_rows(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse, for building test checkpoints: [..., n] float -> (blocks [..., n/32, 16],
    scales [..., n/32]). Each group of 32 gets the exponent that fits its largest magnitude into
    FP4's range (max 6); values round to the nearest FP4 step."""
    *prefix, n = values.shape
    assert n % 32 == 0, n
    groups = values.float().reshape(*prefix, n // 32, 32)
    peak = groups.abs().amax(-1).clamp(min=2.0**-126)
    exp = torch.ceil(torch.log2(peak / 6.0)).clamp(-127, 127)
    scaled = groups / torch.pow(2.0, exp)[..., None]
    table = torch.tensor(FP4_VALUES[:8], device=values.device)
    mags = (scaled.abs()[..., None] - table).abs().argmin(-1)  # index 0..7 of the nearest magnitude
    nibbles = (mags + 8 * (scaled < 0).long()).to(torch.uint8)
    nibbles = torch.where(mags == 0, torch.zeros_like(nibbles), nibbles)  # no -0
    blocks = nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)
    scales = (exp + 127).to(torch.uint8)
    return blocks.contiguous(), scales.contiguous()
