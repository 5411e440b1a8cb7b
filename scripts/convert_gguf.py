"""Convert a ragqa gpt-oss checkpoint to GGUF with llama.cpp's own converter, experts kept MXFP4.

    python scripts/convert_gguf.py CHECKPOINT_DIR OUT.gguf [--outtype auto|f32|bf16|...] [--llama-cpp SRC]

The converter is llama.cpp's `convert_hf_to_gguf.py` from the tree scripts/llamacpp.sh unpacks (the
`vendor/llama.cpp` of the llama-cpp-python source distribution; `--llama-cpp` or RAGQA_LLAMACPP_SRC
point at another), with that tree's `gguf-py`, so converter and llama-server always agree on the format.

Two things stop the converter on our random test checkpoints (`ragqa llm make-tiny`), and one
subclass of its GptOssModel fixes both without touching its files:
- it recognises a BPE pre-tokenizer by hashing how the tokenizer splits a probe text; a byte-level
  tokenizer without merges hashes to nothing it knows. gpt-oss's tokenizer (o200k_harmony) splits
  words with GPT-4o's regex, so the pre-tokenizer is set to "gpt-4o", as a real gpt-oss checkpoint
  gets it;
- llama.cpp refuses a BPE vocabulary without merges, and ours has none (every token is one byte or
  special). One merge of two bytes that never occur in UTF-8 (0xC0 0xC0, written "À À" in the
  byte-level alphabet) satisfies it and never fires, so tokenization stays byte by byte.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PRE_TOKENIZER = "gpt-4o"
NEVER_FIRING_MERGE = "À À"  # byte 0xC0 twice: not valid UTF-8, so never adjacent in real text


def llama_cpp_source(explicit: str | None) -> Path:
    """The llama.cpp tree: --llama-cpp, RAGQA_LLAMACPP_SRC, or the one scripts/llamacpp.sh keeps."""
    chosen = explicit or os.environ.get("RAGQA_LLAMACPP_SRC")
    if not chosen:
        done = subprocess.run(["bash", str(HERE / "llamacpp.sh"), "src"], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"error: cannot get llama.cpp's source: {done.stderr.strip().splitlines()[-1:]}")
        chosen = done.stdout.strip().splitlines()[-1]
    src = Path(chosen)
    if not (src / "convert_hf_to_gguf.py").is_file():
        sys.exit(f"error: {src} has no convert_hf_to_gguf.py (not a llama.cpp tree)")
    return src


def _patched_gpt_oss(gpt_oss: Any, gguf: Any, chat_template: str | None) -> type:
    """llama.cpp's GptOssModel, taught our random tokenizers (see the module docstring)."""

    class RandomTokenizerGptOss(gpt_oss.GptOssModel):
        model_arch = gpt_oss.GptOssModel.model_arch  # the converter wants it declared on every subclass

        def get_vocab_base_pre(self, tokenizer: Any) -> str:
            return PRE_TOKENIZER

        def set_vocab(self) -> None:
            super().set_vocab()
            found = gguf.SpecialVocab(self.dir_model, load_merges=True)
            if not found.merges:  # the converter has just warned "no merges found": this is the answer
                logging.getLogger("convert_gguf").info(f"adding the merge {NEVER_FIRING_MERGE!r}, which never fires")
                self.gguf_writer.add_token_merges([NEVER_FIRING_MERGE])
            if found.chat_template is None and chat_template is not None:
                self.gguf_writer.add_chat_template(chat_template)

    return RandomTokenizerGptOss


def _gpt_oss_template(src: Path) -> str | None:
    """gpt-oss's chat template as llama.cpp ships it, for checkpoints that carry none (ours)."""
    path = src / "models" / "templates" / "openai-gpt-oss-120b.jinja"
    return path.read_text() if path.is_file() else None


def convert(checkpoint: Path, out: Path, src: Path, outtype: str = "auto") -> None:
    """Run llama.cpp's converter (its own main, its own arguments) with the patched model class."""
    for path in (src / "gguf-py", src):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gguf = importlib.import_module("gguf")
    gpt_oss = importlib.import_module("conversion.gpt_oss")
    base = importlib.import_module("conversion.base")
    base.ModelBase.register("GptOssForCausalLM")(_patched_gpt_oss(gpt_oss, gguf, _gpt_oss_template(src)))
    converter = importlib.import_module("convert_hf_to_gguf")
    argv = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", str(checkpoint), "--outfile", str(out), "--outtype", outtype]
    try:
        converter.main()
    finally:
        sys.argv = argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--outtype", default="auto", help="for the tensors that are not experts (experts stay MXFP4)")
    parser.add_argument("--llama-cpp", default=None, help="llama.cpp source tree (default: scripts/llamacpp.sh's)")
    args = parser.parse_args()
    if not (args.checkpoint / "config.json").is_file():
        sys.exit(f"error: {args.checkpoint} is not a checkpoint folder (no config.json)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    convert(args.checkpoint, args.out, llama_cpp_source(args.llama_cpp), args.outtype)


if __name__ == "__main__":
    main()
