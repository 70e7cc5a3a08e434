#!/usr/bin/env bash
# The GGUF side of the CI venv. Calls venv.sh (the shared venv ~/.cache/quantscope-ci/venv with
# torch, transformers, llmcompressor, numpy, safetensors), then makes sure that, all under
# ~/.cache/quantscope-ci:
#   - sdist/llama_cpp_python-0.3.36/ is the extracted PyPI sdist (its vendor/llama.cpp holds
#     convert_hf_to_gguf.py, conversion/, gguf-py/ and the tools' sources);
#   - the venv has gguf==0.19.0, sentencepiece and llama-cpp-python 0.3.36 installed from
#     wheels/llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl, which is built from the sdist
#     when absent (non-native CPU flags: a native build segfaults on quantized models here);
#   - llama-tools/llama-imatrix is built from the sdist's vendored llama.cpp with pip's cmake
#     and ninja (same non-native flags, static, Release, only that target, 2 jobs).
# Idempotent and quick (about a second) when everything exists. Prints the venv's python on
# stdout; everything else goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
CACHE=${QUANTSCOPE_CI_CACHE:-$HOME/.cache/quantscope-ci}
VER=0.3.36
GGUF_VER=0.19.0
JOBS=${QUANTSCOPE_BUILD_JOBS:-2}
NONNATIVE="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF"

PY=$(bash "$here/venv.sh")
VENV="$(dirname "$(dirname "$PY")")"
PIP=("$VENV/bin/pip" --disable-pip-version-check)
log() { echo "gguf_venv: $*" >&2; }

# 1. The sdist, downloaded with pip and extracted once.
SDIST_TGZ="$CACHE/sdist/llama_cpp_python-$VER.tar.gz"
SDIST="$CACHE/sdist/llama_cpp_python-$VER"
if [ ! -f "$SDIST/vendor/llama.cpp/convert_hf_to_gguf.py" ]; then
    mkdir -p "$CACHE/sdist"
    if [ ! -f "$SDIST_TGZ" ]; then
        log "downloading the llama-cpp-python $VER sdist"
        "${PIP[@]}" download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VER" -d "$CACHE/sdist" >&2
    fi
    log "extracting $SDIST_TGZ"
    tmp="$(mktemp -d "$CACHE/sdist/.extract.XXXXXX")"
    tar -xzf "$SDIST_TGZ" -C "$tmp"
    rm -rf "$SDIST"
    mv "$tmp/llama_cpp_python-$VER" "$SDIST"
    rmdir "$tmp"
fi

# 2. Python packages: gguf, sentencepiece, llama-cpp-python from the cached (or new) wheel.
HAVE_PKGS="import importlib.metadata as m, sys
def v(n):
    try: return m.version(n)
    except m.PackageNotFoundError: return None
sys.exit(not (v('gguf') == '$GGUF_VER' and v('sentencepiece') and v('llama_cpp_python') == '$VER'))"
if ! "$PY" -c "$HAVE_PKGS" >/dev/null 2>&1; then
    WHEEL="$CACHE/wheels/llama_cpp_python-$VER-py3-none-linux_x86_64.whl"
    if [ ! -f "$WHEEL" ]; then
        log "building the llama-cpp-python $VER wheel (non-native, $JOBS jobs; about 5 minutes)"
        mkdir -p "$CACHE/wheels"
        CMAKE_ARGS="$NONNATIVE" CMAKE_BUILD_PARALLEL_LEVEL=$JOBS \
            "${PIP[@]}" wheel --no-cache-dir --no-deps "$SDIST_TGZ" -w "$CACHE/wheels" >&2
    fi
    "${PIP[@]}" install --quiet "$WHEEL" "gguf==$GGUF_VER" sentencepiece >&2
    "$PY" -c "$HAVE_PKGS" >&2
fi

# 3. llama-imatrix from the vendored llama.cpp (pip's cmake + ninja, no system package).
TOOLS="$CACHE/llama-tools"
STAMP="llama.cpp of llama-cpp-python $VER; Release; static; $NONNATIVE"
if [ ! -x "$TOOLS/llama-imatrix" ] || [ "$(cat "$TOOLS/llama-imatrix.stamp" 2>/dev/null)" != "$STAMP" ]; then
    if [ ! -x "$VENV/bin/cmake" ] || [ ! -x "$VENV/bin/ninja" ]; then
        "${PIP[@]}" install --quiet cmake ninja >&2
    fi
    log "building llama-imatrix ($JOBS jobs)"
    mkdir -p "$TOOLS"
    BUILD="$TOOLS/build"
    rm -rf "$BUILD"
    # shellcheck disable=SC2086
    "$VENV/bin/cmake" -S "$SDIST/vendor/llama.cpp" -B "$BUILD" -G Ninja \
        -DCMAKE_MAKE_PROGRAM="$VENV/bin/ninja" -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=OFF $NONNATIVE \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
        -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TOOLS=ON -DGGML_CCACHE=OFF >&2
    "$VENV/bin/cmake" --build "$BUILD" --target llama-imatrix -j "$JOBS" >&2
    cp "$BUILD/bin/llama-imatrix" "$TOOLS/llama-imatrix.tmp"
    mv "$TOOLS/llama-imatrix.tmp" "$TOOLS/llama-imatrix"
    echo "$STAMP" > "$TOOLS/llama-imatrix.stamp"
    rm -rf "$BUILD"
fi

echo "$PY"
