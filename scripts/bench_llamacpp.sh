#!/usr/bin/env bash
# Our engine against llama.cpp on the same checkpoint, same machine, same hour:
#
#   scripts/bench_llamacpp.sh MODEL_DIR
#
# Builds llama-bench (scripts/llamacpp.sh, reused when built), converts MODEL_DIR to GGUF with
# experts kept MXFP4 (scripts/convert_gguf.py; the GGUF is cached beside the build, keyed by the
# checkpoint's path and config), runs `llama-bench -t T -p 256 -n 64 -d 256` and the "ours" run of
# `ragqa bench generate` (its worker alone: the other configurations that command times are not
# compared here), and prints decode and prefill tokens/s side by side. T: RAGQA_BENCH_THREADS (default 2, this machine's cores).
# Heavy: run it on an otherwise idle machine, once.
set -euo pipefail

MODEL=${1:?usage: $0 MODEL_DIR}
[ -f "$MODEL/config.json" ] || { echo "error: $MODEL is not a checkpoint folder (no config.json)" >&2; exit 2; }
MODEL=$(cd "$MODEL" && pwd)
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY="$HERE/.venv/bin/python"
THREADS=${RAGQA_BENCH_THREADS:-2}
DIR=${RAGQA_LLAMACPP_DIR:-$HOME/.cache/ragqa/llama.cpp}

BIN=$("$HERE/scripts/llamacpp.sh" all | tail -1)
KEY=$(cat "$MODEL/config.json" <(echo "$MODEL") | sha256sum | cut -c1-16)
GGUF="$DIR/gguf/$(basename "$MODEL")-$KEY.gguf"
if [ ! -f "$GGUF" ] || [ -n "$(find "$MODEL" -newer "$GGUF" -name '*.safetensors' -print -quit)" ]; then
    echo "converting $MODEL -> $GGUF" >&2
    "$PY" "$HERE/scripts/convert_gguf.py" "$MODEL" "$GGUF.tmp" > "$DIR/convert.log" 2>&1 \
        || { tail -20 "$DIR/convert.log" >&2; exit 1; }
    mv "$GGUF.tmp" "$GGUF"
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "llama.cpp: llama-bench -m $GGUF -t $THREADS -p 256 -n 64 -d 256" >&2
"$BIN/llama-bench" -m "$GGUF" -t "$THREADS" -p 256 -n 64 -d 256 -o json > "$WORK/llama.json"
# The expert cache as configured (RAGQA_EXPERT_CACHE_MB), as `ragqa bench generate` would use it.
CACHE_MB=$(cd "$HERE" && "$PY" -c "from rag.settings import load_settings; print(load_settings().expert_cache_mb)")
echo "ours: python -m ragqa.bench.generate $MODEL ours $CACHE_MB 256 64" >&2
(cd "$HERE" && "$PY" -m ragqa.bench.generate "$MODEL" ours "$CACHE_MB" 256 64) | tail -1 > "$WORK/ours.json"

"$PY" - "$WORK/llama.json" "$WORK/ours.json" "$MODEL" "$THREADS" <<'EOF'
import json
import sys

llama, ours, model, threads = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4]
# llama-bench: one entry per test; pp256 has n_gen 0, tg64 has n_prompt 0 (both at depth 256).
pp = next(e["avg_ts"] for e in llama if e["n_prompt"] > 0 and e["n_gen"] == 0)
tg = next(e["avg_ts"] for e in llama if e["n_gen"] > 0 and e["n_prompt"] == 0)
decode, prefill = ours["decode_tok_s"], ours["prefill_tok_s"]  # ragqa.bench.generate's worker, "ours" run
print(f"checkpoint: {model} (threads: {threads})")
print(f"{'':<10}{'ours':>10}{'llama.cpp':>12}{'ratio':>8}")
print(f"{'decode':<10}{decode:>10.1f}{tg:>12.1f}{decode / tg:>7.2f}x")
print(f"{'prefill':<10}{prefill:>10.1f}{pp:>12.1f}{prefill / pp:>7.2f}x")
print(json.dumps({"model": model, "threads": int(threads), "ours": {"decode_tok_s": decode, "prefill_tok_s": prefill},
                  "llama_cpp": {"decode_tok_s": round(tg, 1), "prefill_tok_s": round(pp, 1)},
                  "decode_ratio": round(decode / tg, 2), "prefill_ratio": round(prefill / pp, 2)}))
EOF
