"""`llm.tiny.make_tiny_checkpoint` streams: any shape, without the float weights in memory, and
the same weights as the checkpoints written before it streamed (same seed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from llm.checkpoint import Checkpoint
from llm.engine import Engine, Sampling
from llm.loader import load_model
from llm.mxfp4 import encode_rows
from llm.tiny import GPT_OSS_20B, TinySpec, _tensor_plan, make_tiny_checkpoint


def whole_tensor_weights(spec: TinySpec, vocab: int) -> dict[str, torch.Tensor]:
    """How the checkpoint was made before streaming: every tensor drawn whole, in this order."""
    g = torch.Generator().manual_seed(spec.seed)

    def normal(*shape: int, std: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * std).to(torch.bfloat16)

    h, d, e, i = spec.hidden, spec.head_dim, spec.experts, spec.intermediate
    w = {"model.embed_tokens.weight": normal(vocab, h, std=1.0),
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


def test_streamed_checkpoint_has_the_weights_drawn_whole(tmp_path: Path, monkeypatch) -> None:
    # Tiny pieces (16 rows) so that every large tensor is written in several, at its offsets;
    # three shards; a vocabulary larger than the tokenizer; hidden 96 with 3 heads of 32.
    monkeypatch.setattr("llm.tiny.CHUNK_VALUES", 1 << 10)
    spec = TinySpec(layers=2, hidden=96, intermediate=64, heads=3, head_dim=32, kv_heads=1, experts=5, shards=3,
                    vocab=300, seed=3)
    folder = make_tiny_checkpoint(tmp_path / "ckpt", spec)
    ckpt = Checkpoint(folder)
    expected = whole_tensor_weights(spec, 300)
    assert ckpt.names() == sorted(expected)
    assert ckpt.config.vocab_size == 300 and len(set(ckpt.weight_map.values())) == 3
    for name, tensor in expected.items():
        assert torch.equal(ckpt.tensor(name), tensor), name
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in expected.values())


def test_streamed_checkpoint_loads_and_generates(tmp_path: Path) -> None:
    folder = make_tiny_checkpoint(tmp_path / "ckpt", TinySpec(layers=2, hidden=64, sliding_window=8))
    model, _, _ = load_model(folder, device="cpu", dtype="float32")
    out = Engine(model).generate([[1, 2, 3]], Sampling(max_new_tokens=5, greedy=True))
    assert len(out[0]) == 5 and all(0 <= t < model.config.vocab_size for t in out[0])


MEASURE = textwrap.dedent("""
    import sys
    from pathlib import Path
    import llm.tiny
    from llm.tiny import TinySpec, make_tiny_checkpoint

    llm.tiny.CHUNK_VALUES = 1 << 14  # small pieces: what remains is what streaming does not bound

    def status(key):  # VmRSS now, VmHWM its peak (of this process image: ru_maxrss would count the parent's)
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key + ":"))

    out = Path(sys.argv[1])
    make_tiny_checkpoint(out / "warm", TinySpec())  # first-use allocations (tokenizer, torch) not counted
    before = status("VmRSS")
    spec = TinySpec(layers=1, hidden=512, intermediate=512, experts=16, heads=4, head_dim=64, kv_heads=2)
    make_tiny_checkpoint(out / "mid", spec)
    print(status("VmHWM") - before)
""")


def test_writing_holds_far_less_than_the_float_weights(tmp_path: Path) -> None:
    """One layer of 16 experts 512 x 512: 50 MB as float32 (the old writer held them all, and
    several times that while encoding); streaming, the process grows by a small fraction (about
    1 MB here; pieces of the default size add a few MB, whatever the model's size)."""
    float_bytes = 16 * 3 * 512 * 512 * 4
    ran = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert ran.returncode == 0, ran.stderr[-2000:]
    grew = int(ran.stdout.split()[-1])
    assert grew < float_bytes / 5, (grew, float_bytes)


def test_the_20b_shape_is_planned_as_published() -> None:
    """Every tensor of gpt-oss-20b's checkpoint, with its shape (no weights drawn)."""
    plan = _tensor_plan(GPT_OSS_20B, GPT_OSS_20B.vocab)
    assert len(plan) == 3 + 24 * 19
    assert plan["model.embed_tokens.weight"][0] == (201088, 2880)
    assert plan["model.layers.0.self_attn.q_proj.weight"][0] == (4096, 2880)
    assert plan["model.layers.0.self_attn.k_proj.weight"][0] == (512, 2880)
    assert plan["model.layers.23.mlp.experts.gate_up_proj_blocks"][0] == (32, 5760, 90, 16)
    assert plan["model.layers.23.mlp.experts.down_proj_scales"][0] == (32, 2880, 90)
    experts = sum(math.prod(s) for n, (s, _) in plan.items() if n.endswith(("_blocks", "_scales")))
    assert 9.4 < experts / 2**30 < 9.6  # the published 20b's MXFP4 experts: 9.46 GiB



def test_make_tiny_command_writes_a_shape_with_its_own_head_and_expert_widths(tmp_path: Path) -> None:
    from tests.helpers import no_traceback, ragqa

    folder = tmp_path / "ckpt"
    made = ragqa(None, "llm", "make-tiny", str(folder), "--layers", "1", "--hidden", "96", "--heads", "4",
                 "--head-dim", "32", "--kv-heads", "2", "--intermediate", "64", "--experts", "4", "--vocab", "300")
    assert made.returncode == 0, made.stderr
    config = json.loads((folder / "config.json").read_text())
    assert (config["hidden_size"], config["head_dim"], config["intermediate_size"], config["vocab_size"]) == (
        96, 32, 64, 300)
    assert Checkpoint(folder).tensor("model.layers.0.self_attn.q_proj.weight").shape == (128, 96)
    bad = ragqa(None, "llm", "make-tiny", str(tmp_path / "bad"), "--hidden", "96", "--intermediate", "40")
    assert bad.returncode != 0 and "multiples of 32" in bad.stdout + bad.stderr
    no_traceback(bad)
