#!/usr/bin/env bash
# Build llama.cpp's llama-server and llama-bench (CPU) from the llama-cpp-python source
# distribution on PyPI (its vendor/llama.cpp), so the reference engine is a pinned, registry-hosted
# source rather than a git clone. Idempotent: a second run reuses the download and the build.
#
#   scripts/llamacpp.sh            build (if needed); print the bin dir on the last line
#   scripts/llamacpp.sh src        print the llama.cpp source dir (downloads/unpacks if needed)
#   scripts/llamacpp.sh server     build only llama-server (what tests/test_llama_server.py needs)
#
# Settings (environment):
#   RAGQA_LLAMACPP_DIR      cache dir            (default $HOME/.cache/ragqa/llama.cpp)
#   RAGQA_LLAMACPP_VERSION  llama-cpp-python     (default 0.3.36)
#   RAGQA_LLAMACPP_JOBS     parallel build jobs  (default 2)
# Layout: $DIR/llama_cpp_python-$V.tar.gz, $DIR/src/llama.cpp (the vendor tree), $DIR/build,
# $DIR/bin/{llama-server,llama-bench} (links into the build).
set -euo pipefail

DIR=${RAGQA_LLAMACPP_DIR:-$HOME/.cache/ragqa/llama.cpp}
VERSION=${RAGQA_LLAMACPP_VERSION:-0.3.36}
JOBS=${RAGQA_LLAMACPP_JOBS:-2}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PIP=${PIP:-"$HERE/.venv/bin/pip"}
[ -x "$PIP" ] || PIP="python3 -m pip"
SRC="$DIR/src/llama.cpp"
BUILD="$DIR/build"
GENERATOR=$(command -v ninja > /dev/null && echo Ninja || echo "Unix Makefiles")
mkdir -p "$DIR"

log() { echo "llamacpp: $*" >&2; }

fetch_source() {
    # The stamp says which version the unpacked tree is; a different version is unpacked afresh.
    if [ -f "$SRC/CMakeLists.txt" ] && [ "$(cat "$DIR/src/.version" 2>/dev/null)" = "$VERSION" ]; then
        return
    fi
    local sdist="$DIR/llama_cpp_python-$VERSION.tar.gz"
    if [ ! -f "$sdist" ]; then
        log "downloading llama-cpp-python==$VERSION (source distribution)"
        $PIP download --quiet --no-deps --no-binary :all: --dest "$DIR" "llama-cpp-python==$VERSION"
    fi
    [ -f "$sdist" ] || { log "no $sdist after pip download"; exit 1; }
    log "unpacking $sdist"
    rm -rf "$DIR/src" "$BUILD"
    mkdir -p "$DIR/src"
    tar -xzf "$sdist" -C "$DIR/src"
    mv "$DIR/src/llama_cpp_python-$VERSION/vendor/llama.cpp" "$SRC"
    rm -rf "$DIR/src/llama_cpp_python-$VERSION"
    echo "$VERSION" > "$DIR/src/.version"
}

build() {
    local targets=("$@")
    # The compiler's output (thousands of lines of warnings) goes to build.log, its tail to the
    # terminal only when the build fails.
    local blog="$DIR/build.log" start=$SECONDS
    if [ ! -f "$BUILD/CMakeCache.txt" ]; then
        log "configuring (CPU, native; log: $blog)"
        cmake -S "$SRC" -B "$BUILD" -G "$GENERATOR" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
            -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
            -DBUILD_SHARED_LIBS=OFF > "$blog" 2>&1 || { tail -30 "$blog" >&2; exit 1; }
    fi
    log "building ${targets[*]} (-j$JOBS)"
    cmake --build "$BUILD" --target "${targets[@]}" -j "$JOBS" >> "$blog" 2>&1 || { tail -30 "$blog" >&2; exit 1; }
    log "built in $((SECONDS - start)) s"
    mkdir -p "$DIR/bin"
    for t in "${targets[@]}"; do ln -sf "$BUILD/bin/$t" "$DIR/bin/$t"; done
}

case "${1:-all}" in
    src) fetch_source; echo "$SRC" ;;
    server) fetch_source; build llama-server; echo "$DIR/bin" ;;
    all) fetch_source; build llama-server llama-bench; echo "$DIR/bin" ;;
    *) echo "usage: $0 [all|server|src]" >&2; exit 2 ;;
esac
