"""llama-quantize's per-tensor type choice, recorded from the real library, for
engine/tests/gguf_preset.rs (engine/src/gguf/preset/).

Writes small GGUF models with gguf-py (0.19.0), F16 weights and F32 norms and
biases of seeded random values, holding the metadata llama.cpp reads to load a
model's hparams for quantization. Then for each preset (and a few option sets:
--tensor-type overrides, --pure, --output-tensor-type, --token-embedding-type,
--leave-output-tensor, an importance matrix) it runs llama.cpp's own
llama_model_quantize (llama-cpp-python 0.3.36, the llama.cpp vendored in its
sdist) and reads back with gguf.GGUFReader the type of every tensor it wrote and
`general.file_type`.

The models (llama.cpp loads only the hparams to quantize, so the tensor list is
free of the architecture's own checks; and its choice reads a tensor's row length
ne[0] and expert count ne[2], never its number of rows, so every matrix keeps at
most MAX_ROWS rows, which keeps the slow IQ quantizers quick):
  llama-4l      llama, 4 blocks, hidden 256, ffn 768, 8 heads / 2 KV heads (GQA 4)
  llama-16l     llama, 16 blocks, 4 heads / 2 KV heads given as per-layer arrays
  llama-80l     llama, 80 blocks with 8 heads / 1 KV head: llama.cpp's "70B" rule
                (the presets whose rules read the layer only)
  bert-384      bert, 3 blocks, hidden 384 (K-quant fallbacks), no output.weight,
                position and token-type embeddings, a 100-wide classifier (F16
                fallback), no general.file_type (COPY's guessed file type)
  qwen2-tied    qwen2, 6 blocks, GQA 4, tied embeddings, ffn 320 (fallbacks)
  mixtral-moe   llama with 8 experts (3-D expert tensors, the n_expert == 8 rules)
  falcon        falcon, 4 blocks, fused attn_qkv, output.weight

Fixtures: one JSON per model in OUT (default engine/tests/data/gguf/preset): its
metadata, its tensors (name, ne, type) in file order, and per case the options
and llama-quantize's file_type and type per tensor (same order), or "error", the
library's message, where it refuses (Q1_0 on a row no 128-block divides). A preset
that llama-quantize refuses without an importance matrix (IQ1/IQ2, IQ3_XXS, Q2_K_S)
is run with one of all ones and recorded with "imatrix": true.

  python tests/python/gguf_preset_reference.py [--out DIR]
  python tests/python/gguf_preset_reference.py --check --example target/debug/examples/gguf_preset

--check regenerates everything in a temporary folder, requires it to equal the
committed fixtures, and runs the example binary (`gguf_preset FILE PRESET
[options]`, JSON out) on each regenerated GGUF and case: its type for every
tensor and its file_type must equal llama-quantize's. Exit 1 on any difference.
"""
import argparse
import ctypes
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import gguf
import llama_cpp

LIBRARY = "llama-cpp-python 0.3.36 (vendored llama.cpp, src/llama-quant.cpp)"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "engine/tests/data/gguf/preset"

# tools/quantize/quantize.cpp's QUANT_OPTIONS, without Q2_0 (its ggml type is not in
# engine/src/ggml/types.rs) and the aliases Q3_K/Q4_K/Q5_K.
PRESETS = {
    "Q1_0": 40, "Q4_0": 2, "Q4_1": 3, "MXFP4_MOE": 38, "Q5_0": 8, "Q5_1": 9,
    "IQ2_XXS": 19, "IQ2_XS": 20, "IQ2_S": 28, "IQ2_M": 29, "IQ1_S": 24, "IQ1_M": 31,
    "TQ1_0": 36, "TQ2_0": 37, "Q2_K": 10, "Q2_K_S": 21, "IQ3_XXS": 23, "IQ3_S": 26,
    "IQ3_M": 27, "IQ3_XS": 22, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "IQ4_NL": 25,
    "IQ4_XS": 30, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18,
    "Q8_0": 7, "F16": 1, "BF16": 32, "F32": 0, "COPY": 0,
}
# Presets whose rules read has_imatrix: each is also run with an importance matrix.
IMATRIX_SENSITIVE = ["Q4_0", "Q5_0", "IQ4_NL", "IQ4_XS", "Q4_K_M"]
# Option sets beyond the plain presets, as llama-quantize's flags would give them.
EXTRA_CASES = [
    {"preset": "Q4_K_M", "tensor_types": ["attn_v=q8_0", "ffn_down=f16"]},
    {"preset": "Q4_K_M", "tensor_types": [r"blk\.[01]\.ffn_(up|gate)=q6_k", "output=q4_0"]},
    {"preset": "Q3_K_M", "tensor_types": [r"BLK\.0\.attn_(v|qkv)=q4_k"]},
    {"preset": "IQ4_NL", "tensor_types": ["attn=q5_k"]},
    {"preset": "Q4_K_M", "pure": True},
    {"preset": "Q2_K", "pure": True},
    {"preset": "Q6_K", "pure": True, "tensor_types": ["ffn=q4_k"]},
    {"preset": "Q4_K_M", "output_tensor_type": "Q8_0", "token_embedding_type": "Q5_0"},
    {"preset": "Q5_K_S", "output_tensor_type": "Q4_K"},
    {"preset": "Q4_K_M", "pure": True, "output_tensor_type": "Q5_K"},
    {"preset": "Q4_K_M", "leave_output_tensor": True},
    {"preset": "F16", "token_embedding_type": "Q8_0"},
]
GGML_TYPE_COUNT = 43
# llama.cpp's choice reads a tensor's row length ne[0] and its expert count ne[2], never
# its number of rows, so every matrix keeps at most this many rows: the IQ quantizers are
# slow, and the whole run takes minutes instead of an hour.
MAX_ROWS = 32


# ---------------------------------------------------------------------------- models

class Model:
    """A model under construction: metadata (recorded) and tensors (HF shapes)."""

    def __init__(self, name, arch):
        self.name, self.arch = name, arch
        self.kv = {"general.architecture": arch}
        self.tensors = []  # (name, HF shape, numpy dtype)
        self.presets = list(PRESETS)  # the presets run on this model
        self.extras = True  # whether EXTRA_CASES run on it

    def key(self, suffix, value):
        self.kv[f"{self.arch}.{suffix}" if not suffix.startswith("general.") else suffix] = value

    def t(self, name, *shape):
        """A tensor of HF shape `shape`, its rows capped at MAX_ROWS (see the docstring)."""
        if len(shape) >= 2:
            shape = shape[:-2] + (min(shape[-2], MAX_ROWS), shape[-1])
        self.tensors.append((name, tuple(shape), np.float32 if len(shape) == 1 else np.float16))

    def hparams(self, blocks, hidden, ffn, heads, heads_kv, eps_key="attention.layer_norm_rms_epsilon"):
        self.key("context_length", 512)
        self.key("embedding_length", hidden)
        self.key("block_count", blocks)
        self.key("feed_forward_length", ffn)
        self.key("attention.head_count", heads)
        self.key("attention.head_count_kv", heads_kv)
        self.key(eps_key, 1e-5)


def decoder_layers(m, blocks, hidden, ffn, kv_dim, bias=False):
    for i in range(blocks):
        b = f"blk.{i}."
        m.t(b + "attn_norm.weight", hidden)
        m.t(b + "attn_q.weight", hidden, hidden)
        m.t(b + "attn_k.weight", kv_dim, hidden)
        m.t(b + "attn_v.weight", kv_dim, hidden)
        if bias:
            m.t(b + "attn_q.bias", hidden)
            m.t(b + "attn_k.bias", kv_dim)
            m.t(b + "attn_v.bias", kv_dim)
        m.t(b + "attn_output.weight", hidden, hidden)
        m.t(b + "ffn_norm.weight", hidden)
        m.t(b + "ffn_gate.weight", ffn, hidden)
        m.t(b + "ffn_up.weight", ffn, hidden)
        m.t(b + "ffn_down.weight", hidden, ffn)


def llama(name, blocks, heads, heads_kv, hidden=256, ffn=768, vocab=512, per_layer=False):
    m = Model(name, "llama")
    m.key("general.file_type", 1)
    m.hparams(blocks, hidden, ffn, [heads] * blocks if per_layer else heads,
              [heads_kv] * blocks if per_layer else heads_kv)
    m.t("token_embd.weight", vocab, hidden)
    decoder_layers(m, blocks, hidden, ffn, hidden // heads * heads_kv)
    m.t("output_norm.weight", hidden)
    m.t("output.weight", vocab, hidden)
    return m


def seventy_b():
    """80 blocks with fewer KV heads than heads: llama.cpp's LLM_TYPE_70B, whose attn_v
    gets Q5_K for Q3_K/Q4_K. Only the presets whose attn_v or ffn_down rules read the
    layer run on it (its fixture stays small)."""
    m = llama("llama-80l", 80, 8, 1, ffn=256, vocab=256)
    m.presets = ["Q2_K", "Q2_K_S", "IQ3_XXS", "IQ3_S", "IQ3_M", "IQ3_XS", "Q3_K_S", "Q3_K_M", "Q3_K_L",
                 "IQ4_NL", "IQ4_XS", "Q4_K_S", "Q4_K_M", "Q5_K_M"]
    m.extras = False
    return m


def bert():
    hidden, ffn, blocks = 384, 1536, 3
    m = Model("bert-384", "bert")  # no general.file_type: COPY writes llama.cpp's guess
    m.hparams(blocks, hidden, ffn, 6, 6, eps_key="attention.layer_norm_epsilon")
    m.key("attention.causal", False)
    m.key("pooling_type", 1)
    m.t("token_embd.weight", 512, hidden)
    m.t("token_types.weight", 2, hidden)
    m.t("position_embd.weight", 512, hidden)
    m.t("token_embd_norm.weight", hidden)
    m.t("token_embd_norm.bias", hidden)
    for i in range(blocks):
        b = f"blk.{i}."
        for p in ("attn_q", "attn_k", "attn_v", "attn_output"):
            m.t(b + p + ".weight", hidden, hidden)
            m.t(b + p + ".bias", hidden)
        m.t(b + "attn_output_norm.weight", hidden)
        m.t(b + "attn_output_norm.bias", hidden)
        m.t(b + "ffn_up.weight", ffn, hidden)
        m.t(b + "ffn_up.bias", ffn)
        m.t(b + "ffn_down.weight", hidden, ffn)
        m.t(b + "ffn_down.bias", hidden)
        m.t(b + "layer_output_norm.weight", hidden)
        m.t(b + "layer_output_norm.bias", hidden)
    m.t("cls.weight", 2, 100)  # a row of 100: no 32-block type fits, so F16
    return m


def qwen2_tied():
    hidden, ffn, blocks = 256, 320, 6
    m = Model("qwen2-tied", "qwen2")
    m.key("general.file_type", 1)
    m.hparams(blocks, hidden, ffn, 4, 1)
    m.t("token_embd.weight", 512, hidden)
    decoder_layers(m, blocks, hidden, ffn, 64, bias=True)
    m.t("output_norm.weight", hidden)
    return m


def mixtral_moe():
    hidden, ffn, blocks, experts = 256, 256, 4, 8
    m = Model("mixtral-moe", "llama")
    m.key("general.file_type", 1)
    m.hparams(blocks, hidden, ffn, 8, 2)
    m.key("expert_count", experts)
    m.key("expert_used_count", 2)
    m.t("token_embd.weight", 512, hidden)
    for i in range(blocks):
        b = f"blk.{i}."
        m.t(b + "attn_norm.weight", hidden)
        m.t(b + "attn_q.weight", hidden, hidden)
        m.t(b + "attn_k.weight", 64, hidden)
        m.t(b + "attn_v.weight", 64, hidden)
        m.t(b + "attn_output.weight", hidden, hidden)
        m.t(b + "ffn_norm.weight", hidden)
        m.t(b + "ffn_gate_inp.weight", experts, hidden)
        m.t(b + "ffn_gate_exps.weight", experts, ffn, hidden)
        m.t(b + "ffn_up_exps.weight", experts, ffn, hidden)
        m.t(b + "ffn_down_exps.weight", experts, hidden, ffn)
    m.t("output_norm.weight", hidden)
    m.t("output.weight", 512, hidden)
    return m


def falcon():
    hidden, blocks = 256, 4
    m = Model("falcon", "falcon")
    m.key("general.file_type", 1)
    m.hparams(blocks, hidden, 4 * hidden, 8, 1, eps_key="attention.layer_norm_epsilon")
    m.t("token_embd.weight", 512, hidden)
    for i in range(blocks):
        b = f"blk.{i}."
        m.t(b + "attn_norm.weight", hidden)
        m.t(b + "attn_norm.bias", hidden)
        m.t(b + "attn_qkv.weight", hidden + 2 * 32, hidden)
        m.t(b + "attn_output.weight", hidden, hidden)
        m.t(b + "ffn_up.weight", 4 * hidden, hidden)
        m.t(b + "ffn_down.weight", hidden, 4 * hidden)
    m.t("output_norm.weight", hidden)
    m.t("output_norm.bias", hidden)
    m.t("output.weight", 512, hidden)
    return m


def models():
    return [
        llama("llama-4l", 4, 8, 2),
        llama("llama-16l", 16, 4, 2, per_layer=True),
        seventy_b(),
        bert(),
        qwen2_tied(),
        mixtral_moe(),
        falcon(),
    ]


def write_gguf(m, path, seed):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), m.arch)
    for k, v in m.kv.items():
        if k == "general.architecture":
            continue
        if isinstance(v, bool):
            w.add_bool(k, v)
        elif isinstance(v, float):
            w.add_float32(k, v)
        elif isinstance(v, list):
            w.add_array(k, v)
        else:
            w.add_uint32(k, v)
    for name, shape, dtype in m.tensors:
        w.add_tensor(name, (rng.standard_normal(shape) * 0.02).astype(dtype))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def tensor_list(m):
    """(name, ne, type) as GGUF stores them, in file order."""
    return [[n, list(reversed(shape)), "F32" if dt == np.float32 else "F16"] for n, shape, dt in m.tensors]


# ---------------------------------------------------------------------------- llama-quantize

_log = []


class QuantizeError(Exception):
    pass


@llama_cpp.llama_log_callback
def _keep_log(level, text, _user):
    _log.append(text.decode("utf-8", "replace"))


def ggml_type_id(name):
    return int(gguf.GGMLQuantizationType[name.upper()])


def quantize(m, src, dst, case):
    """Runs llama_model_quantize with the case's options; returns (file_type, types) or
    raises with the library's last log lines."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = 2
    params.ftype = PRESETS[case["preset"]]
    params.only_copy = case["preset"] == "COPY"
    params.pure = case.get("pure", False)
    params.quantize_output_tensor = not case.get("leave_output_tensor", False)
    params.output_tensor_type = ggml_type_id(case["output_tensor_type"]) if case.get("output_tensor_type") else GGML_TYPE_COUNT
    params.token_embedding_type = (
        ggml_type_id(case["token_embedding_type"]) if case.get("token_embedding_type") else GGML_TYPE_COUNT)
    keep = []  # ctypes buffers that must outlive the call
    overrides = case.get("tensor_types", [])
    if overrides:
        arr = (llama_cpp.llama_model_tensor_override * (len(overrides) + 1))()
        for i, spec in enumerate(overrides):
            pattern, ty = spec.split("=", 1)
            # quantize.cpp lowercases the pattern before it becomes a std::regex
            keep.append(ctypes.c_char_p(pattern.lower().encode()))
            arr[i].pattern = keep[-1].value
            arr[i].type = ggml_type_id(ty)
        arr[len(overrides)].pattern = None
        arr[len(overrides)].type = GGML_TYPE_COUNT
        keep.append(arr)
        params.tt_overrides = arr
    if case.get("imatrix"):
        rows = [(n, ne) for n, ne, _ in tensor_list(m) if len(ne) >= 2 and n.endswith("weight")]
        arr = (llama_cpp.llama_model_imatrix_data * (len(rows) + 1))()
        for i, (n, ne) in enumerate(rows):
            size = ne[0] * (ne[2] if len(ne) > 2 else 1)
            data = (ctypes.c_float * size)(*([1.0] * size))
            keep += [data, ctypes.c_char_p(n.encode())]
            arr[i].name = keep[-1].value
            arr[i].data = data
            arr[i].size = size
        arr[len(rows)].name = None
        keep.append(arr)
        params.imatrix = arr
    _log.clear()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        failed = [line for line in _log if "failed to quantize:" in line]
        raise QuantizeError(failed[-1].split("failed to quantize:", 1)[1].strip() if failed else "".join(_log[-3:]))
    r = gguf.GGUFReader(str(dst))
    field = r.fields["general.file_type"]
    file_type = int(field.parts[field.data[0]][0])
    got = {t.name: t.tensor_type.name for t in r.tensors}
    return file_type, [got[n] for n, _, _ in m.tensors]


def cases(m):
    out = [{"preset": p} for p in m.presets]
    out += [{"preset": p, "imatrix": True} for p in IMATRIX_SENSITIVE if p in m.presets]
    return out + (EXTRA_CASES if m.extras else [])


def reference(m, folder):
    """Writes the model's GGUF into folder and returns its path and fixture. A case
    llama-quantize refuses keeps the library's message as "error" instead of types."""
    src = folder / f"{m.name}.gguf"
    write_gguf(m, src, seed=sum(map(ord, m.name)))
    fixture = {"library": LIBRARY, "model": m.name, "metadata": m.kv, "tensors": tensor_list(m), "cases": []}
    dst = folder / f"{m.name}.out.gguf"
    for case in cases(m):
        case = dict(case)
        try:
            case["file_type"], case["types"] = quantize(m, src, dst, case)
        except QuantizeError as e:
            if not case.get("imatrix") and "imatrix" in str(e):
                # llama-quantize refuses these types without an importance matrix
                case["imatrix"] = True
                try:
                    case["file_type"], case["types"] = quantize(m, src, dst, case)
                except QuantizeError as e2:
                    case["error"] = str(e2)
            else:
                case["error"] = str(e)
        fixture["cases"].append(case)
    dst.unlink(missing_ok=True)
    return src, fixture


def dump(fixture):
    """One case per line: readable diffs, small files."""
    head = {k: v for k, v in fixture.items() if k not in ("tensors", "cases")}
    lines = ["{"]
    lines += [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append('  "tensors": [')
    lines.append(",\n".join("    " + json.dumps(t) for t in fixture["tensors"]))
    lines.append("  ],")
    lines.append('  "cases": [')
    lines.append(",\n".join("    " + json.dumps(c) for c in fixture["cases"]))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- check

def example_args(example, path, case):
    args = [str(example), str(path), case["preset"]]
    for spec in case.get("tensor_types", []):
        args += ["--tensor-type", spec]
    for flag in ("pure", "imatrix", "leave_output_tensor"):
        if case.get(flag):
            args.append("--" + flag.replace("_", "-"))
    for opt in ("output_tensor_type", "token_embedding_type"):
        if case.get(opt):
            args += ["--" + opt.replace("_", "-"), case[opt]]
    return args


def check(example, out):
    failures = 0
    compared = tensors_equal = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for m in models():
            src, fixture = reference(m, folder)
            committed = out / f"{m.name}.json"
            if not committed.exists() or committed.read_text() != dump(fixture):
                print(f"FAIL {committed}: differs from what llama-quantize gives now (rerun without --check)")
                failures += 1
            for case in fixture["cases"]:
                run = subprocess.run(example_args(example, src, case), capture_output=True, text=True)
                label = f"{m.name} {json.dumps({k: v for k, v in case.items() if k not in ('types', 'file_type')})}"
                if "error" in case:
                    # llama-quantize refused: the Rust side must refuse too
                    if run.returncode == 0:
                        print(f"FAIL {label}: llama-quantize refused, the example did not")
                        failures += 1
                    continue
                if run.returncode != 0:
                    print(f"FAIL {label}: example exited {run.returncode}: {run.stderr.strip()}")
                    failures += 1
                    continue
                got = json.loads(run.stdout)
                ours = {t["name"]: t["to"] for t in got["tensors"]}
                bad = [(n, want, ours.get(n)) for (n, _, _), want in zip(fixture["tensors"], case["types"])
                       if ours.get(n) != want]
                compared += len(case["types"])
                tensors_equal += len(case["types"]) - len(bad)
                if bad or got["file_type"] != case["file_type"]:
                    failures += 1
                    print(f"FAIL {label}: file_type {got['file_type']} vs {case['file_type']}; "
                          f"{len(bad)} tensors differ, first: {bad[:3]}")
            print(f"{m.name}: {len(fixture['cases'])} cases checked")
    print(f"{tensors_equal} of {compared} tensor choices equal llama-quantize's; {failures} failures")
    return failures == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--example", type=Path, help="the gguf_preset example binary (with --check)")
    a = ap.parse_args()
    llama_cpp.llama_log_set(_keep_log, ctypes.c_void_p())
    if a.check:
        if a.example is None:
            ap.error("--check needs --example PATH")
        sys.exit(0 if check(a.example.resolve(), a.out) else 1)
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for m in models():
            _, fixture = reference(m, Path(tmp))
            (a.out / f"{m.name}.json").write_text(dump(fixture))
            print(f"wrote {a.out / (m.name + '.json')} ({len(fixture['cases'])} cases, {len(m.tensors)} tensors)")


if __name__ == "__main__":
    main()
