"""`ragqa llm generate`, `llm make-tiny` and `bench generate` as users run them (in this process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import ragqa


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    made = ragqa(None, "llm", "make-tiny", str(folder), "--layers", "2", "--hidden", "64", "--experts", "8",
                 "--sliding-window", "8", "--seed", "3")
    assert made.returncode == 0, made.stderr
    assert {p.name for p in folder.iterdir()} >= {"config.json", "tokenizer.json", "model.safetensors.index.json",
                                                  "model-00000-of-00001.safetensors",
                                                  "model-00001-of-00001.safetensors"}
    return folder


def test_greedy_token_ids_equal_transformers(checkpoint: Path) -> None:
    from transformers import GptOssForCausalLM
    from transformers.utils import logging
    from transformers.utils.quantization_config import Mxfp4Config  # not in transformers' typed exports

    logging.set_verbosity_error()
    ref = GptOssForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32,
                                            quantization_config=Mxfp4Config(dequantize=True)).eval()
    for n in (5, 19):  # shorter and longer than the 8-token window
        prompt = torch.randint(1, 256, (n,), generator=torch.Generator().manual_seed(n)).tolist()
        out = ragqa(None, "llm", "generate", "--model", str(checkpoint), "--token-ids", ",".join(map(str, prompt)),
                    "--greedy", "--dtype", "float32", "--max-new-tokens", "12", "--json")
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        expected = ref.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, n, dtype=torch.long),
                                max_new_tokens=12, do_sample=False, pad_token_id=257)[0, n:].tolist()
        assert got["token_ids"] == expected
        assert isinstance(got["text"], str)


def test_prompt_mode_seeded_and_errors(checkpoint: Path) -> None:
    args = ["llm", "generate", "--model", str(checkpoint), "--prompt", "Hi", "--max-new-tokens", "6", "--json"]
    a, b = ragqa(None, *args, "--seed", "5"), ragqa(None, *args, "--seed", "5")
    assert a.returncode == 0, a.stderr
    assert json.loads(a.stdout)["token_ids"] == json.loads(b.stdout)["token_ids"]
    assert {"answer", "reasoning", "text"} <= set(json.loads(a.stdout))
    both = ragqa(None, "llm", "generate", "--model", str(checkpoint), "--prompt", "x", "--token-ids", "1")
    assert both.returncode == 1 and both.stderr.startswith("error: give exactly one")
    bad = ragqa(None, "llm", "generate", "--model", str(checkpoint), "--token-ids", "1,99999")
    assert bad.returncode == 1 and "each in 0.." in bad.stderr
    missing = ragqa(None, "llm", "generate", "--model", str(checkpoint.parent / "nope"), "--token-ids", "1")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


@pytest.mark.slow  # five timed runs, one of them transformers'
def test_bench_generate_reports_every_run(checkpoint: Path) -> None:
    out = ragqa(None, "bench", "generate", "--model", str(checkpoint), "--prompt-tokens", "16", "--new-tokens", "4",
                "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert set(result["runs"]) == {"ours", "ours_cache_off", "ours_all_decoded", "ours_without_kernel", "transformers"}
    for run in result["runs"].values():
        assert run["decode_tok_s"] > 0 and run["prefill_tok_s"] > 0 and run["first_token_ms"] > 0
    assert set(result["comparisons"]) == {"decode_speedup_vs_transformers", "cache_off_peak_vs_all_decoded"}
