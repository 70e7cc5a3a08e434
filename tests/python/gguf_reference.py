"""llama.cpp as the reference for GGUF files (llama-cpp-python 0.3.36, gguf 0.19.0).

Run with the venv of gguf_venv.sh. Subcommands:

  quantize SRC DST --ftype NAME [--imatrix F] [--tensor-type PATTERN=TYPE ...] [--pure]
           [--output-tensor-type T] [--token-embedding-type T] [--leave-output-tensor]
           [--allow-requantize] [--threads N]
      llama-quantize through llama_cpp.llama_model_quantize, with the same parameters the
      llama-quantize tool of the vendored llama.cpp (tools/quantize/quantize.cpp) passes: the
      imatrix file is read as common_imatrix_load reads it (GGUF `<name>.in_sum2` / `.counts`, or
      the legacy .dat), each entry normalised as its load_imatrix does (GGUF: sums / count per
      expert; .dat: sums / ncall), handed over as llama_model_imatrix_data[] with a null
      terminator, and the four `quantize.imatrix.*` KV overrides (file name as given, first
      dataset, entry count, chunk count) are added in the tool's order. --tensor-type patterns are
      lower-cased regexes (std::regex_search on the GGUF name), TYPE a ggml type name (q4_k, q8_0,
      ...), passed as llama_model_tensor_override[] with a null terminator. Writes DST.partial and
      renames it when done.
  compare EXPECTED ACTUAL [--strict-metadata]
      Tensor by tensor (gguf.GGUFReader): same names, types, shapes and bytes. One
      `ok: NAME TYPE identical` (or `DIFF: ...`) line per tensor, then `N/M tensors identical`.
      Metadata keys and values are compared and reported on their own lines (`meta: ...`); they
      only fail the run with --strict-metadata. Exit 1 on any tensor difference.
  logits A B --prompt TEXT [--threads N]
      llama_cpp.Llama(..., logits_all=True) on both files, the same tokens (add_bos), eval; prints
      the max abs difference and whether the logits are exactly equal. Exit 1 if not equal.
  run FILE... [--prompt TEXT] [--embedding]
      Loads each file with llama_cpp.Llama and evaluates the prompt: `ok: FILE n_tokens=.. finite
      logits, max |value| ..` per file (exit 1 if one fails or is not finite). --embedding: the
      pooled embedding (Llama(embedding=True).embed) instead, for BERT files.
  types FILE
      JSON: {"file", "file_type", "tensors": [{"name", "type", "shape"}]} (shape as GGUF ne[],
      innermost first).
  dequant FILE --tensor NAME --out RAW_F32
      gguf.quants.dequantize of one tensor, written as little-endian f32 (row-major, numpy shape).
  dequant-check FILE --tensor NAME --values RAW_F32
      Compares gguf.quants.dequantize of one tensor with raw little-endian f32 values (or a .npy
      file): max abs difference and whether they are bit-identical. Exit 1 if not identical.
"""
import argparse
import ctypes
import json
import math
import os
import struct
import sys
from pathlib import Path

import numpy as np

FTYPES = ["F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q4_0",
          "Q4_1", "Q5_0", "Q5_1", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q2_K", "Q2_K_S", "IQ4_NL",
          "IQ4_XS"]


# ---------------------------------------------------------------------------------------------
# imatrix files, read as common/imatrix-loader.cpp + tools/quantize/quantize.cpp do
# ---------------------------------------------------------------------------------------------

def _lround(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def load_imatrix(path: str):
    """Returns (entries {name: float32 array}, datasets [str], chunk_count) as llama-quantize's
    load_imatrix() leaves them (already normalised)."""
    with open(path, "rb") as f:
        magic = f.read(4)
    entries = {}
    if magic == b"GGUF":
        import gguf
        r = gguf.GGUFReader(path)
        fields = r.fields
        datasets = []
        if "imatrix.datasets" in fields:
            datasets = [str(s) for s in fields["imatrix.datasets"].contents()]
        has_meta = all(k in fields for k in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"))
        if not has_meta:
            raise SystemExit(f"missing imatrix metadata in file {path}")
        chunk_count = int(fields["imatrix.chunk_count"].contents())
        sums, counts = {}, {}
        for t in r.tensors:
            if t.name.endswith(".in_sum2"):
                sums[t.name[:-len(".in_sum2")]] = t
            elif t.name.endswith(".counts"):
                counts[t.name[:-len(".counts")]] = t
        for name in sorted(set(sums) | set(counts)):
            if name not in sums or name not in counts:
                raise SystemExit(f"mismatched sums and counts for {name}")
            s, c = sums[name], counts[name]
            if s.tensor_type != gguf.GGMLQuantizationType.F32 or c.tensor_type != gguf.GGMLQuantizationType.F32:
                raise SystemExit(f"sums and counts for {name} must be F32")
            s = np.asarray(s.data, dtype=np.float32).reshape(-1)
            c = [_lround(float(x)) for x in np.asarray(c.data, dtype=np.float32).reshape(-1)]
            ne0 = len(s) // len(c)
            e = np.empty_like(s)
            for j, cnt in enumerate(c):
                if cnt > 0:
                    e[j * ne0:(j + 1) * ne0] = s[j * ne0:(j + 1) * ne0] / np.float32(cnt)
                else:
                    e[j * ne0:(j + 1) * ne0] = 1.0
            entries[name] = e
        return entries, datasets, chunk_count
    # legacy .dat
    data = Path(path).read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v

    (n_entries,) = take("<i")
    if n_entries < 1:
        raise SystemExit(f"no data in file {path}")
    for _ in range(n_entries):
        (ln,) = take("<i")
        name = data[pos:pos + ln].decode()
        pos += ln
        ncall, nval = take("<ii")
        s = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        entries[name] = s / np.float32(ncall) if ncall > 0 else s.copy()
    datasets, chunk_count = [], 0
    if pos < len(data):
        (chunk_count,) = take("<i")
        if pos + 4 <= len(data):
            (ln,) = take("<i")
            if ln > 0:
                datasets.append(data[pos:pos + ln].decode())
    return entries, datasets, chunk_count


# ---------------------------------------------------------------------------------------------
# quantize
# ---------------------------------------------------------------------------------------------

def ggml_type(name: str) -> int:
    import gguf
    try:
        return int(gguf.GGMLQuantizationType[name.upper()])
    except KeyError:
        raise SystemExit(f"invalid ggml_type '{name}'")


def ftype_value(name: str) -> int:
    import llama_cpp
    n = name.upper()
    alias = {"Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M", "Q3_K": "Q3_K_M"}
    n = alias.get(n, n)
    attr = "LLAMA_FTYPE_ALL_F32" if n == "F32" else f"LLAMA_FTYPE_MOSTLY_{n}"
    if not hasattr(llama_cpp, attr):
        raise SystemExit(f"unknown ftype {name}")
    return int(getattr(llama_cpp, attr))


def cmd_quantize(a):
    import llama_cpp
    p = llama_cpp.llama_model_quantize_default_params()
    p.nthread = a.threads
    p.ftype = ftype_value(a.ftype)
    p.pure = a.pure
    p.allow_requantize = a.allow_requantize
    if a.leave_output_tensor:
        p.quantize_output_tensor = False
    if a.output_tensor_type:
        p.output_tensor_type = ggml_type(a.output_tensor_type)
    if a.token_embedding_type:
        p.token_embedding_type = ggml_type(a.token_embedding_type)

    keep = []  # everything the C side points into stays alive until the call returns
    kvs = []
    if a.imatrix:
        entries, datasets, chunk_count = load_imatrix(a.imatrix)
        arr = (llama_cpp.llama_model_imatrix_data * (len(entries) + 1))()
        for i, (name, vals) in enumerate(entries.items()):
            vals = np.ascontiguousarray(vals, dtype=np.float32)
            nm = name.encode()
            keep += [vals, nm]
            arr[i].name = nm
            arr[i].data = vals.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            arr[i].size = vals.size
        arr[len(entries)].name = None
        keep.append(arr)
        p.imatrix = arr
        print(f"imatrix: {len(entries)} entries from {a.imatrix}, datasets {datasets}, "
              f"{chunk_count} chunks", file=sys.stderr)
        kvs.append(("quantize.imatrix.file", "str", a.imatrix))
        if datasets:
            kvs.append(("quantize.imatrix.dataset", "str", datasets[0]))
        kvs.append(("quantize.imatrix.entries_count", "int", len(entries)))
        if chunk_count > 0:
            kvs.append(("quantize.imatrix.chunks_count", "int", chunk_count))
    if kvs:
        arr = (llama_cpp.llama_model_kv_override * (len(kvs) + 1))()
        for i, (key, kind, val) in enumerate(kvs):
            arr[i].key = key.encode()[:127]
            if kind == "str":
                arr[i].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
                arr[i].value.val_str = val.encode()[:127]
            else:
                arr[i].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
                arr[i].value.val_i64 = val
        arr[len(kvs)].key = b""
        keep.append(arr)
        p.kv_overrides = arr
    if a.tensor_type:
        arr = (llama_cpp.llama_model_tensor_override * (len(a.tensor_type) + 1))()
        for i, spec in enumerate(a.tensor_type):
            if "=" not in spec or spec.startswith("=") or spec.endswith("="):
                raise SystemExit(f"malformed tensor type '{spec}' (want PATTERN=TYPE)")
            pat, typ = spec.split("=", 1)
            pat_b = pat.lower().encode()
            keep.append(pat_b)
            arr[i].pattern = pat_b
            arr[i].type = ggml_type(typ)
        arr[len(a.tensor_type)].pattern = None
        arr[len(a.tensor_type)].type = llama_cpp.GGML_TYPE_COUNT
        keep.append(arr)
        p.tt_overrides = arr

    llama_cpp.llama_backend_init()
    dst = Path(a.dst)
    partial = dst.with_name(dst.name + ".partial")
    rc = llama_cpp.llama_model_quantize(a.src.encode(), str(partial).encode(), ctypes.byref(p))
    if rc != 0:
        partial.unlink(missing_ok=True)
        raise SystemExit(f"llama_model_quantize failed ({rc}): {a.src} -> {a.dst} as {a.ftype}")
    os.replace(partial, dst)
    print(f"quantized {a.src} -> {a.dst} as {a.ftype}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# compare / types / dequant
# ---------------------------------------------------------------------------------------------

def _field_value(f):
    import gguf
    types = [gguf.GGUFValueType(t).name for t in f.types]
    v = f.contents()
    if isinstance(v, float) or (isinstance(v, list) and v and isinstance(v[0], float)):
        # compare floats by their stored bits, not by printed value
        raw = [bytes(f.parts[i].tobytes()) for i in f.data]
        return types, v, raw
    return types, v, None


def _short(v, n=80):
    s = json.dumps(v) if not isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[:n] + f"... ({len(v) if hasattr(v, '__len__') else ''} items)"


def cmd_compare(a):
    import gguf
    e, g = gguf.GGUFReader(a.expected), gguf.GGUFReader(a.actual)
    et = {t.name: t for t in e.tensors}
    at = {t.name: t for t in g.tensors}
    same = 0
    bad = 0
    for name, t in et.items():
        u = at.get(name)
        if u is None:
            print(f"DIFF: {name} missing from ACTUAL")
            bad += 1
            continue
        tn, un = t.tensor_type.name, u.tensor_type.name
        ts, us = [int(x) for x in t.shape], [int(x) for x in u.shape]
        if tn != un or ts != us:
            print(f"DIFF: {name} type/shape {tn}{ts} != {un}{us}")
            bad += 1
            continue
        tb = e.data[t.data_offset:t.data_offset + t.n_bytes]
        ub = g.data[u.data_offset:u.data_offset + u.n_bytes]
        if t.n_bytes == u.n_bytes and np.array_equal(tb, ub):
            print(f"ok: {name} {tn} identical")
            same += 1
        else:
            nd = int(np.count_nonzero(tb != ub)) if t.n_bytes == u.n_bytes else -1
            first = int(np.argmax(tb != ub)) if nd > 0 else -1
            msg = f"DIFF: {name} {tn} bytes differ ({nd} of {t.n_bytes}, first at {first})"
            try:
                de = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
                du = gguf.quants.dequantize(u.data, u.tensor_type).astype(np.float64)
                msg += f", max abs diff of values {np.max(np.abs(de - du)):.6g}"
            except Exception as ex:  # noqa: BLE001 - report only
                msg += f" (no dequantize: {ex})"
            print(msg)
            bad += 1
    for name in at:
        if name not in et:
            print(f"DIFF: {name} only in ACTUAL")
            bad += 1
    if [t.name for t in e.tensors] != [t.name for t in g.tensors] and not bad:
        print("note: tensor order differs")
    # metadata
    meta_diff = 0
    ef = {k: f for k, f in e.fields.items() if not k.startswith("GGUF.")}
    af = {k: f for k, f in g.fields.items() if not k.startswith("GGUF.")}
    for k, f in ef.items():
        if k not in af:
            print(f"meta: {k} only in EXPECTED ({_short(f.contents())})")
            meta_diff += 1
            continue
        (t1, v1, r1), (t2, v2, r2) = _field_value(f), _field_value(af[k])
        if t1 != t2 or (v1 != v2 if r1 is None else r1 != r2):
            print(f"meta: {k} differs: {t1} {_short(v1)} != {t2} {_short(v2)}")
            meta_diff += 1
    for k, f in af.items():
        if k not in ef:
            print(f"meta: {k} only in ACTUAL ({_short(f.contents())})")
            meta_diff += 1
    if list(ef) != list(af) and not meta_diff:
        print("meta: key order differs")
    n_meta = len(set(ef) | set(af))
    print(f"metadata: {n_meta - meta_diff}/{n_meta} keys identical")
    files_same = Path(a.expected).read_bytes() == Path(a.actual).read_bytes()
    print(f"files byte-identical: {'yes' if files_same else 'no'}")
    total = len(set(et) | set(at))
    print(f"{same}/{total} tensors identical")
    if bad or (a.strict_metadata and meta_diff):
        sys.exit(1)


def cmd_types(a):
    import gguf
    r = gguf.GGUFReader(a.file)
    ft = r.fields.get("general.file_type")
    out = {
        "file": os.path.basename(a.file),
        "file_type": int(ft.contents()) if ft is not None else None,
        "tensors": [{"name": t.name, "type": t.tensor_type.name, "shape": [int(x) for x in t.shape]}
                    for t in r.tensors],
    }
    # one tensor per line: small and diff-friendly
    rows = ",\n".join("  " + json.dumps(t) for t in out["tensors"])
    print("{\n" + f' "file": {json.dumps(out["file"])},\n "file_type": {json.dumps(out["file_type"])},\n'
          + f' "tensors": [\n{rows}\n ]\n' + "}")


def _tensor(path, name):
    import gguf
    r = gguf.GGUFReader(path)
    for t in r.tensors:
        if t.name == name:
            return t
    raise SystemExit(f"no tensor {name} in {path}")


def cmd_dequant(a):
    import gguf
    t = _tensor(a.file, a.tensor)
    v = gguf.quants.dequantize(t.data, t.tensor_type).astype("<f4")
    Path(a.out).write_bytes(v.tobytes())
    print(f"{a.tensor} {t.tensor_type.name} ne={[int(x) for x in t.shape]} -> {a.out} ({v.size} f32)")


def cmd_dequant_check(a):
    import gguf
    t = _tensor(a.file, a.tensor)
    got = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
    if a.values.endswith(".npy"):
        want = np.load(a.values).astype(np.float32).reshape(-1)
    else:
        want = np.fromfile(a.values, dtype="<f4")
    if got.size != want.size:
        print(f"DIFF: {a.tensor} {got.size} values dequantized, {want.size} given")
        sys.exit(1)
    same_bits = np.array_equal(got.view(np.uint32), want.view(np.uint32))
    mad = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if got.size else 0.0
    n = int(np.count_nonzero(got.view(np.uint32) != want.view(np.uint32)))
    print(f"{'ok' if same_bits else 'DIFF'}: {a.tensor} {t.tensor_type.name} max abs diff {mad:.6g}, "
          f"{n} of {got.size} values differ{'; bit-identical' if same_bits else ''}")
    sys.exit(0 if same_bits else 1)


# ---------------------------------------------------------------------------------------------
# running models
# ---------------------------------------------------------------------------------------------

def _logits(path, prompt, threads):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=threads, n_threads_batch=threads,
                          logits_all=True, verbose=False, seed=0)
    toks = llm.tokenize(prompt.encode(), add_bos=True)
    llm.eval(toks)
    sc = np.array(llm.scores[:len(toks)], dtype=np.float32)
    del llm
    return toks, sc


def cmd_logits(a):
    ta, la = _logits(a.a, a.prompt, a.threads)
    tb, lb = _logits(a.b, a.prompt, a.threads)
    if ta != tb:
        print(f"DIFF: token ids differ: {ta} vs {tb}")
        sys.exit(1)
    mad = float(np.max(np.abs(la.astype(np.float64) - lb.astype(np.float64))))
    equal = np.array_equal(la.view(np.uint32), lb.view(np.uint32))
    print(f"tokens: {len(ta)}; logits shape {list(la.shape)}")
    print(f"max abs diff: {mad:.6g}")
    print(f"logits exactly equal: {'yes' if equal else 'no'}")
    sys.exit(0 if equal else 1)


def _embedding(path, prompt, threads):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=path, n_ctx=256, n_threads=threads, n_threads_batch=threads,
                          embedding=True, verbose=False, seed=0)
    toks = llm.tokenize(prompt.encode(), add_bos=True)
    emb = np.array(llm.embed(prompt), dtype=np.float32).reshape(1, -1)
    del llm
    return toks, emb


def cmd_run(a):
    bad = 0
    what = "embedding" if a.embedding else "logits"
    for f in a.files:
        try:
            toks, sc = (_embedding if a.embedding else _logits)(f, a.prompt, a.threads)
        except Exception as ex:  # noqa: BLE001 - reported
            print(f"FAIL: {f}: {ex}")
            bad += 1
            continue
        finite = bool(np.all(np.isfinite(sc)))
        print(f"{'ok' if finite else 'FAIL'}: {os.path.basename(f)} n_tokens={len(toks)} "
              f"{'finite' if finite else 'NON-FINITE'} {what}, max |value| {float(np.max(np.abs(sc))):.4g}, "
              f"argmax of last row {int(np.argmax(sc[-1]))}")
        bad += not finite
    sys.exit(1 if bad else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quantize")
    q.add_argument("src")
    q.add_argument("dst")
    q.add_argument("--ftype", required=True, help=" ".join(FTYPES))
    q.add_argument("--imatrix")
    q.add_argument("--tensor-type", action="append", default=[], metavar="PATTERN=TYPE")
    q.add_argument("--pure", action="store_true")
    q.add_argument("--output-tensor-type")
    q.add_argument("--token-embedding-type")
    q.add_argument("--leave-output-tensor", action="store_true")
    q.add_argument("--allow-requantize", action="store_true")
    q.add_argument("--threads", type=int, default=2)
    q.set_defaults(fn=cmd_quantize)
    c = sub.add_parser("compare")
    c.add_argument("expected")
    c.add_argument("actual")
    c.add_argument("--strict-metadata", action="store_true")
    c.set_defaults(fn=cmd_compare)
    lg = sub.add_parser("logits")
    lg.add_argument("a")
    lg.add_argument("b")
    lg.add_argument("--prompt", required=True)
    lg.add_argument("--threads", type=int, default=2)
    lg.set_defaults(fn=cmd_logits)
    r = sub.add_parser("run")
    r.add_argument("files", nargs="+")
    r.add_argument("--prompt", default="The quick brown fox jumps over the lazy dog.")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--embedding", action="store_true", help="embedding models (BERT): Llama.embed")
    r.set_defaults(fn=cmd_run)
    t = sub.add_parser("types")
    t.add_argument("file")
    t.set_defaults(fn=cmd_types)
    d = sub.add_parser("dequant")
    d.add_argument("file")
    d.add_argument("--tensor", required=True)
    d.add_argument("--out", required=True)
    d.set_defaults(fn=cmd_dequant)
    dc = sub.add_parser("dequant-check")
    dc.add_argument("file")
    dc.add_argument("--tensor", required=True)
    dc.add_argument("--values", required=True)
    dc.set_defaults(fn=cmd_dequant_check)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
