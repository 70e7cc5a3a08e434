#!/usr/bin/env python3
"""quantscope's GPTQ save against llm-compressor 0.14's oneshot with GPTQModifier, end to end.

Usage: gptq_oneshot.py --quantscope BIN [--model DIR] [--calibration FILE] [--cache DIR]
       [--out DIR] [--actual DIR] [--rtn DIR]

1. The reference, built once under --cache (default ~/.cache/quantscope-ci/gptq-oneshot) and
   reused while its `.complete` marker names the same library versions and calibration file:
   `gptq-in-order/` is llm-compressor's
       oneshot(model=AutoModel(MODEL, f32), dataset=ds, processor=tokenizer,
               recipe=GPTQModifier(targets="Linear", scheme="W4A16", ignore=[]),
               num_calibration_samples=len(lines), max_seq_length=128, batch_size=1,
               shuffle_calibration_samples=False)
   saved with `save_pretrained(save_compressed=True)` plus the tokenizer files; `ds` has one
   row per non-empty calibration line (stripped), tokenized alone (truncation at 128, no padding).
   The samples go in file order, as quantscope takes them. `gptq/` is the same call with
   oneshot's default shuffled order: the same arithmetic summed in another order, which is how
   far llm-compressor agrees with itself.
   The round-to-nearest baseline is llm-compressor's data-free W4A16 save (--rtn, default
   ~/.cache/quantscope-ci/reference/f32/W4A16, which `BIN quantize --scheme int4:group128`
   matches byte for byte), or that quantscope command when the folder is absent.
2. quantscope's save: `BIN quantize MODEL OUT --scheme int4:group128:gptq --inputs CALIBRATION`
   (OUT is --out, or a temporary folder). --actual DIR compares an existing folder instead.
3. Checks, one `ok:`/`FAIL:` line each, exit 1 on any FAIL:
   a. the same tensor names, dtypes and shapes as llm-compressor's GPTQ save, and the tensors
      other than weight_packed/weight_scale (biases, norms, embeddings, weight_shape) identical;
   b. every `*.weight_scale` identical bit for bit;
   c. INT4 codes unpacked from `*.weight_packed`, against `gptq-in-order/`: at least 99.9 %
      identical in block 0 (whose inputs no quantized layer has touched yet), and over all
      layers at least as identical as llm-compressor's two orders are to each other, less one
      point. Past block 0 each block is calibrated on the quantized blocks' outputs, so one
      rounding tie decided otherwise early on reaches every later block: the 99 % over all
      layers the issue asks for is beyond llm-compressor's own reproducibility (84.5 % between
      its two orders on MiniLM). Per-layer figures are printed with round-to-nearest's;
   d. mean pooled-embedding cosine against the F32 original (load_and_run.py's sentences):
      |quantscope - llm-compressor| <= 0.001, and both above round-to-nearest;
   e. config.json's quantization_config on compare_saves.py's fields.
   The last line sums it up.
"""

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_saves import config_diffs, read_qconfig, read_tensors, unpack_bits  # noqa: E402
from load_and_run import SENTENCES, one_line, pooled  # noqa: E402
from make_reference import copy_side_files  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CACHE = Path.home() / ".cache" / "quantscope-ci" / "gptq-oneshot"
RTN_REFERENCE = Path.home() / ".cache" / "quantscope-ci" / "reference" / "f32" / "W4A16"
MARKER = ".complete"
MAX_SEQ = 128
MIN_BLOCK0_SHARE = 0.999
FLOOR_MARGIN = 0.01
MAX_COS_GAP = 0.001
QUANT_PARAMS = ("weight_packed", "weight_scale")


def versions():
    import compressed_tensors
    import torch
    import transformers
    from importlib.metadata import version
    return {"llmcompressor": version("llmcompressor"), "compressed_tensors": compressed_tensors.__version__,
            "transformers": transformers.__version__, "torch": torch.__version__}


def calibration_lines(path: Path):
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def llmcompressor_gptq(model_dir: Path, calibration: Path, dst: Path, shuffle: bool):
    """llm-compressor's GPTQ save of model_dir into dst, unless a matching one is cached."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    want = {**versions(), "calibration_sha256": hashlib.sha256(calibration.read_bytes()).hexdigest(),
            "shuffle": shuffle}
    marker = dst / MARKER
    if marker.exists():
        info = json.loads(marker.read_text())
        if all(info.get(k) == v for k, v in want.items()):
            print(f"reference: {dst} cached (oneshot took {info['oneshot_s']:.1f}s when built)", flush=True)
            return dst

    from datasets import Dataset

    # llm-compressor logs to the sys.stdout it sees when imported: make that stderr,
    # so stdout holds only this script's lines.
    with contextlib.redirect_stdout(sys.stderr):
        from llmcompressor import oneshot
        from llmcompressor.modifiers.gptq import GPTQModifier

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    lines = calibration_lines(calibration)
    enc = [tok(line, truncation=True, max_length=MAX_SEQ) for line in lines]
    ds = Dataset.from_dict({k: [e[k] for e in enc] for k in ("input_ids", "attention_mask", "token_type_ids")})
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.monotonic()
    oneshot(model=model, dataset=ds, processor=tok,
            recipe=GPTQModifier(targets="Linear", scheme="W4A16", ignore=[]),
            num_calibration_samples=len(lines), max_seq_length=MAX_SEQ, batch_size=1,
            shuffle_calibration_samples=shuffle)
    elapsed = time.monotonic() - t0
    model.save_pretrained(tmp, save_compressed=True)
    copy_side_files(model_dir, tmp)
    (tmp / MARKER).write_text(json.dumps({**want, "samples": len(lines), "oneshot_s": round(elapsed, 2)},
                                         indent=1) + "\n")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    print(f"reference: llm-compressor GPTQ oneshot on {len(lines)} samples took {elapsed:.1f}s -> {dst}",
          flush=True)
    return dst


def quantscope_save(binary, model_dir: Path, out: Path, extra):
    """`BIN quantize MODEL OUT ...`; exits with a FAIL line if the command fails."""
    cmd = [str(binary), "quantize", str(model_dir), str(out), *extra]
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        err = (res.stderr.strip().splitlines() or [""])[-1]
        print(f"FAIL: {' '.join(cmd)} exited {res.returncode}: {err}", flush=True)
        sys.exit(1)
    print(f"quantscope: {' '.join(cmd)} ({time.monotonic() - t0:.1f}s)", flush=True)
    return out


def quantscope_gptq(binary, model_dir: Path, calibration: Path, out: Path):
    return quantscope_save(binary, model_dir, out,
                           ["--scheme", "int4:group128:gptq", "--inputs", str(calibration)])


def rtn_save(rtn_dir: Path, binary, model_dir: Path, scratch: Path):
    if (rtn_dir / "model.safetensors").exists():
        print(f"round-to-nearest: {rtn_dir}", flush=True)
        return rtn_dir
    if not binary:
        raise SystemExit(f"FAIL: no round-to-nearest save at {rtn_dir} and no --quantscope to make one")
    return quantscope_save(binary, model_dir, scratch / "rtn", ["--scheme", "int4:group128"])


def is_buffer(name):
    # transformers does not save non-persistent buffers (BERT's position_ids); quantscope copies them.
    return name == "position_ids" or name.endswith(".position_ids")


def check_tensors(te, ta, report):
    """a: names, dtypes, shapes; the tensors that are not packed codes or scales byte-identical."""
    extra = sorted(n for n in set(ta) - set(te) if not is_buffer(n))
    missing = sorted(set(te) - set(ta))
    common = sorted(set(te) & set(ta))
    layout = [n for n in common if te[n][:2] != ta[n][:2]]
    plain = [n for n in common if n.rpartition(".")[2] not in QUANT_PARAMS]
    bytes_differ = [n for n in plain if n not in layout and te[n][2] != ta[n][2]]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors missing, e.g. {', '.join(missing[:3])}")
    if extra:
        problems.append(f"{len(extra)} unexpected tensors, e.g. {', '.join(extra[:3])}")
    if layout:
        n = layout[0]
        problems.append(f"{len(layout)} tensors with another dtype/shape, e.g. {n}: expected "
                        f"{te[n][0]}{list(te[n][1])}, actual {ta[n][0]}{list(ta[n][1])}")
    if bytes_differ:
        problems.append(f"{len(bytes_differ)} of {len(plain)} other tensors differ, e.g. {', '.join(bytes_differ[:3])}")
    layers = sorted(n[:-len(".weight_packed")] for n in te if n.endswith(".weight_packed"))
    if problems:
        report(False, "tensors: " + "; ".join(problems))
    else:
        report(True, f"tensors: {len(common)} with the same names, dtypes and shapes; {len(layers)} quantized "
                     f"Linears; the {len(plain)} others (biases, norms, embeddings, weight_shape) identical")
    return layers


def check_scales(layers, te, ta, report):
    """b: weight_scale bit for bit per layer; returns the count of identical layers."""
    same, worst = 0, []
    for layer in layers:
        e, a = te.get(f"{layer}.weight_scale"), ta.get(f"{layer}.weight_scale")
        if a is not None and e == a:
            same += 1
            continue
        if a is None or e[:2] != a[:2]:
            worst.append(f"{layer} (missing or other layout)")
            continue
        dt = {"F32": "<f4", "F16": "<f2"}.get(e[0], "u1")
        ve, va = np.frombuffer(e[2], dt), np.frombuffer(a[2], dt)
        worst.append(f"{layer} ({int(np.count_nonzero(ve != va))}/{ve.size} differ)")
    report(same == len(layers), f"scales: {same}/{len(layers)} layers identical bit for bit"
           + (f"; differ: {', '.join(worst[:4])}{' ...' if len(worst) > 4 else ''}" if worst else ""))
    return same


def codes(tensors, layer):
    t = tensors.get(f"{layer}.weight_packed")
    if t is None or t[0] != "I32":
        return None
    return unpack_bits(np.frombuffer(t[2], "<i4").reshape(t[1]), 4)


def layer_type(layer):
    parts = layer.split(".")
    return ".".join(parts[3:]) if parts[:2] == ["encoder", "layer"] else layer


def identity(layers, te, ta):
    """Identical codes per layer: {layer: (same, total)} (total counted even when incomparable)."""
    out = {}
    for layer in layers:
        ce, ca = codes(te, layer), codes(ta, layer)
        ok = ca is not None and ca.shape == ce.shape
        out[layer] = (int(np.count_nonzero(ce == ca)) if ok else 0, ce.size)
    return out


def share(counts, keep=lambda _: True):
    same = sum(s for l, (s, _) in counts.items() if keep(l))
    total = sum(t for l, (_, t) in counts.items() if keep(l))
    return same / total if total else 0.0


def check_codes(layers, te, ta, tr, tshuffled, report):
    """c: code identity per layer, in block 0 and over all layers, against the floor."""
    qs, rtn, floor = identity(layers, te, ta), identity(layers, te, tr), identity(layers, te, tshuffled)
    by_type = defaultdict(lambda: [0, 0, 0])
    lines = []
    for layer in layers:
        (s, n), r = qs[layer], rtn[layer][0]
        acc = by_type[layer_type(layer)]
        acc[0], acc[1], acc[2] = acc[0] + s, acc[1] + n, acc[2] + r
        lines.append(f"  {layer}: {100 * s / n:.2f} % (llm-compressor shuffled {100 * floor[layer][0] / n:.2f} %, "
                     f"rtn {100 * r / n:.2f} %)")
    print("codes identical to llm-compressor GPTQ (in order), per layer:\n" + "\n".join(lines), flush=True)
    print("codes by layer type: " + ", ".join(f"{t} {100 * v[0] / v[1]:.2f} % (rtn {100 * v[2] / v[1]:.2f} %)"
                                              for t, v in by_type.items()), flush=True)
    block0 = share(qs, lambda l: l.startswith("encoder.layer.0."))
    report(block0 >= MIN_BLOCK0_SHARE,
           f"codes in block 0: {100 * block0:.3f} % identical (need >= {100 * MIN_BLOCK0_SHARE:.1f} %)")
    got, own = share(qs), share(floor)
    report(got >= own - FLOOR_MARGIN,
           f"codes over {len(layers)} layers: {100 * got:.3f} % identical; llm-compressor shuffled against in "
           f"order: {100 * own:.3f} % (need >= {100 * (own - FLOOR_MARGIN):.3f} %); round-to-nearest: "
           f"{100 * share(rtn):.3f} %")
    return got


def mean_cosines(original: Path, saves):
    """Mean cosine of pooled embeddings of each save against the F32 original (None if it fails)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    batch = AutoTokenizer.from_pretrained(original)(SENTENCES, padding=True, return_tensors="pt")
    ref = pooled(AutoModel.from_pretrained(original, dtype=torch.float32).eval(), batch)
    out = {}
    for label, folder in saves.items():
        try:
            model, info = AutoModel.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
            # transformers fills missing parameters with uninitialized memory and goes on.
            bad = [k for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") for k in info.get(kind) or []]
            if bad:
                raise RuntimeError(f"{len(bad)} missing/unexpected/mismatched keys, e.g. {bad[0]}")
            emb = pooled(model.eval(), batch)
        except Exception as e:  # noqa: BLE001 - one line per failing save
            print(f"FAIL: load and run {folder}: {one_line(e)}", flush=True)
            out[label] = None
            continue
        cos = torch.nn.functional.cosine_similarity(emb.double(), ref.double(), dim=-1)
        out[label] = cos.mean().item() if torch.isfinite(cos).all() else None
    return out


def cos_text(v):
    return "n/a" if v is None else f"{v:.6f}"


def check_cosines(cos, report):
    qs, llmc, rtn = cos["quantscope"], cos["llm-compressor"], cos["rtn"]
    shown = ", ".join(f"{k} {cos_text(v)}" for k, v in cos.items())
    ok = None not in (qs, llmc, rtn) and abs(qs - llmc) <= MAX_COS_GAP and qs > rtn and llmc > rtn
    report(ok, f"cosine vs F32 original over {len(SENTENCES)} sentences: {shown} (need |qs - llmc| <= "
               f"{MAX_COS_GAP} and both above rtn)")


def check_config(exp_dir: Path, act_dir: Path, report):
    qe, qa = read_qconfig(exp_dir), read_qconfig(act_dir)
    diffs = config_diffs(qe, qa)
    w = next(iter((qe or {}).get("config_groups", {}).values()), {}).get("weights") or {}
    report(not diffs, "quantization_config: " + ("; ".join(diffs) if diffs else
           f"matches (actorder {json.dumps(w.get('actorder'))})"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quantscope", type=Path, help="the quantscope binary")
    ap.add_argument("--model", type=Path, default=REPO / "sample-models" / "minilm")
    ap.add_argument("--calibration", type=Path, default=REPO / "sample-models" / "calibration.txt")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where llm-compressor's save is kept")
    ap.add_argument("--out", type=Path, help="keep quantscope's save here (default: a temporary folder)")
    ap.add_argument("--actual", type=Path, help="compare this existing save instead of running BIN")
    ap.add_argument("--rtn", type=Path, default=RTN_REFERENCE, help="round-to-nearest W4A16 save")
    a = ap.parse_args()
    if not a.quantscope and not a.actual:
        ap.error("--quantscope BIN is needed unless --actual is given")

    t_start = time.monotonic()
    failures = []

    def report(ok, msg):
        print(f"{'ok' if ok else 'FAIL'}: {msg}", flush=True)
        if not ok:
            failures.append(msg)

    with tempfile.TemporaryDirectory(prefix="gptq-oneshot-") as scratch:
        scratch = Path(scratch)
        expected = llmcompressor_gptq(a.model, a.calibration, a.cache / "gptq-in-order", shuffle=False)
        shuffled = llmcompressor_gptq(a.model, a.calibration, a.cache / "gptq", shuffle=True)
        rtn = rtn_save(a.rtn, a.quantscope, a.model, scratch)
        if a.actual:
            actual = a.actual
            print(f"quantscope: comparing the existing save {actual}", flush=True)
        else:
            actual = quantscope_gptq(a.quantscope, a.model, a.calibration, a.out or scratch / "gptq")

        te, ta, tr, ts = (read_tensors(d) for d in (expected, actual, rtn, shuffled))
        layers = check_tensors(te, ta, report)
        same_scales = check_scales(layers, te, ta, report)
        got = check_codes(layers, te, ta, tr, ts, report)
        cos = mean_cosines(a.model, {"quantscope": actual, "llm-compressor": expected, "rtn": rtn})
        check_cosines(cos, report)
        check_config(expected, actual, report)

    print(f"gptq end to end: codes {100 * got:.2f} % identical over {len(layers)} layers, scales "
          f"{same_scales}/{len(layers)} identical, cosine qs {cos_text(cos['quantscope'])} llmc "
          f"{cos_text(cos['llm-compressor'])} rtn {cos_text(cos['rtn'])}; {len(failures)} failed "
          f"({time.monotonic() - t_start:.0f}s)", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
