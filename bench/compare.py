#!/usr/bin/env python3
"""quantscope side by side with numpy and ONNX Runtime on one 4096 x 4096 tensor.

    python3 bench/compare.py [--bin target/release/quantscope] [--repeat 5]
    $PY bench/compare.py --whole-only     # numpy rows only, with $PY's numpy + safetensors

Makes its own venv (bench/.venv) with numpy, onnxruntime, onnx and safetensors,
writes the tensor as F32 .safetensors, and times, best of --repeat:

- numpy, written as a user would: per-channel symmetric INT8 quantize,
  dequantize and MSE;
- ONNX Runtime's calibrators (onnxruntime.quantization.calibrate): entropy,
  percentile and distribution, finding the range of the same tensor (fed as
  the output of an Identity node, the way ORT calibrates);
- quantscope on the same file (`report --timing`: decode + quantize +
  dequantize + every metric, in process; the CLI's start-up is shown apart);
- whole processes, start-up, mapping and output included: `quantscope report`
  against a straightforward numpy script (load the file with safetensors,
  per-channel INT8 quantize, dequantize, MSE), on the file as safetensors
  writes it and on one whose F32 data is not 4-byte aligned (legal).

Prints Markdown tables of times and ratios. `--whole-only` skips ONNX Runtime
(and the venv it needs): it runs with the interpreter it is started with, e.g. the
shared venv of tests/python/venv.sh.
"""
import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV = ROOT / "bench" / ".venv"
PY = VENV / "bin" / "python"
ROWS = COLS = 4096


def ensure_venv():
    if pathlib.Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not PY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "numpy", "onnxruntime", "onnx", "safetensors"],
        check=True,
    )
    os.execv(str(PY), [str(PY), __file__, *sys.argv[1:]])


def best(fn, repeat):
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3, out


def main():
    args = sys.argv[1:]
    whole_only = "--whole-only" in args
    if not whole_only:
        ensure_venv()
    import numpy as np
    from safetensors.numpy import save_file

    binary = args[args.index("--bin") + 1] if "--bin" in args else str(ROOT / "target/release/quantscope")
    repeat = int(args[args.index("--repeat") + 1]) if "--repeat" in args else 5
    if not pathlib.Path(binary).exists():
        # A clean checkout: build the release binary first.
        subprocess.run(["cargo", "build", "--release", "--bin", "quantscope"], cwd=ROOT, check=True)
    work = ROOT / "target" / "compare"
    work.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(7)
    w = (rng.standard_normal((ROWS, COLS)) * 0.02).astype(np.float32)
    w[::97] *= 20.0  # a few outlier rows, as real weights have
    tensor_path = work / "w.safetensors"
    save_file({"w.weight": w}, str(tensor_path))

    unaligned_path = work / "w_unaligned.safetensors"
    write_unaligned(unaligned_path, "w.weight", w)

    rows = []

    # numpy, as a user writes it.
    def numpy_int8_channel():
        amax = np.abs(w).max(axis=1, keepdims=True)
        scale = np.where(amax > 0, amax / 127.5, np.finfo(np.float32).eps).astype(np.float32)
        q = np.clip(np.round(w / scale), -128, 127)
        r = (q * scale).astype(np.float32)
        return float(np.mean((w.astype(np.float64) - r) ** 2))

    np_ms, np_mse = best(numpy_int8_channel, repeat)

    def quantscope(scheme):
        def run():
            out = subprocess.run(
                [binary, "report", str(tensor_path), "--scheme", scheme, "--timing"],
                check=True, capture_output=True, text=True,
            )
            return json.loads(out.stdout)["tensors"][0]
        wall, rec = best(run, repeat)
        inproc = min(run()["elapsed_ms"] for _ in range(repeat))
        return inproc, wall, rec

    qs_ms, qs_wall, rec = quantscope("int8:channel:minmax")
    assert abs(rec["metrics"]["mse"] - np_mse) <= 1e-6 * np_mse, (rec["metrics"]["mse"], np_mse)
    rows.append(("per-channel INT8 quantize + dequantize + MSE", "numpy", np_ms, qs_ms, qs_wall,
                 "int8:channel:minmax (all metrics)"))

    whole = whole_process(binary, repeat, [("aligned", tensor_path), ("unaligned", unaligned_path)])
    if whole_only:
        print_tables(rows, whole, f"numpy {np.__version__}", w.nbytes, repeat)
        return
    import onnx
    from onnx import TensorProto, helper
    from onnxruntime.quantization.calibrate import CalibrationDataReader, CalibrationMethod, create_calibrator

    # ONNX Runtime's calibrators on the same tensor, as an Identity node's output.
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [ROWS, COLS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [ROWS, COLS])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model_path = work / "identity.onnx"
    onnx.save(model, str(model_path))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.done = False

        def get_next(self):
            if self.done:
                return None
            self.done = True
            return {"x": w}

    def ort(method, extra):
        def run():
            cal = create_calibrator(str(model_path), ["Identity"],
                                    augmented_model_path=str(work / "augmented.onnx"),
                                    calibrate_method=method, extra_options=extra)
            cal.collect_data(Reader())
            return cal.compute_data()
        return best(run, repeat)[0]

    for name, method, extra, scheme in [
        ("entropy (KL) range", CalibrationMethod.Entropy, {"num_bins": 2048}, "int8:tensor:entropy"),
        ("percentile 99.999 range", CalibrationMethod.Percentile, {"percentile": 99.999}, "int8:tensor:p99.999"),
        ("distribution (FP8) range", CalibrationMethod.Distribution, {}, "e4m3:tensor:mse"),
    ]:
        peer = ort(method, extra)
        qs, wall, _ = quantscope(scheme)
        rows.append((name, "ONNX Runtime", peer, qs, wall, f"{scheme} (range + quantize + all metrics)"))

    versions = f"numpy {np.__version__}, onnxruntime {__import__('onnxruntime').__version__}"
    print_tables(rows, whole, versions, w.nbytes, repeat)


def print_tables(rows, whole, versions, nbytes, repeat):
    print(f"Tensor {ROWS}x{COLS} F32 ({nbytes >> 20} MiB); best of {repeat}; {versions}")
    print()
    print("| task | peer | peer ms | quantscope ms (in process) | x faster | quantscope CLI wall ms | quantscope scheme |")
    print("|---|---|---:|---:|---:|---:|---|")
    for task, peer, p_ms, q_ms, wall, scheme in rows:
        print(f"| {task} | {peer} | {p_ms:.1f} | {q_ms:.1f} | {p_ms / q_ms:.1f} | {wall:.1f} | `{scheme}` |")
    print()
    print("Whole process (start-up, load or map, per-channel INT8 quantize + dequantize + MSE, output):")
    print()
    print("| file | numpy script ms | quantscope report ms | x faster |")
    print("|---|---:|---:|---:|")
    for name, np_wall, qs_wall in whole:
        print(f"| {name} | {np_wall:.1f} | {qs_wall:.1f} | {np_wall / qs_wall:.1f} |")


NUMPY_SCRIPT = """
import sys
import numpy as np
from safetensors.numpy import load_file
w = load_file(sys.argv[1])["w.weight"]
amax = np.abs(w).max(axis=1, keepdims=True)
scale = np.where(amax > 0, amax / 127.5, np.finfo(np.float32).eps).astype(np.float32)
q = np.clip(np.round(w / scale), -128, 127)
r = (q * scale).astype(np.float32)
print(float(np.mean((w.astype(np.float64) - r) ** 2)))
"""


def write_unaligned(path, name, w):
    """A safetensors file whose F32 data starts 1 byte off a 4-byte boundary
    (a 1-byte U8 tensor first): legal, and what some writers produce."""
    import json as _json
    header = {"pad": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
              name: {"dtype": "F32", "shape": list(w.shape), "data_offsets": [1, 1 + w.nbytes]}}
    text = _json.dumps(header, separators=(",", ":"))
    text += " " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text.encode())
        f.write(b"\0")
        f.write(w.astype("<f4").tobytes())


def whole_process(binary, repeat, files):
    """Best-of-`repeat` wall time of each whole process, on each file; the MSEs
    must agree."""
    out = []
    for name, path in files:
        def numpy_run():
            return float(subprocess.run([sys.executable, "-c", NUMPY_SCRIPT, str(path)],
                                        check=True, capture_output=True, text=True).stdout)

        def qs_run():
            res = subprocess.run([binary, "report", str(path), "--scheme", "int8:channel:minmax"],
                                 check=True, capture_output=True, text=True)
            rec = next(t for t in json.loads(res.stdout)["tensors"] if t["name"] == "w.weight")
            return rec["metrics"]["mse"]

        np_wall, np_mse = best(numpy_run, repeat)
        qs_wall, qs_mse = best(qs_run, repeat)
        assert abs(qs_mse - np_mse) <= 1e-6 * np_mse, (name, qs_mse, np_mse)
        out.append((name, np_wall, qs_wall))
    return out


if __name__ == "__main__":
    main()
