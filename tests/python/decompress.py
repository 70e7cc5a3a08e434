#!/usr/bin/env python3
"""Decompress a compressed-tensors save with compressed-tensors' own code.

Usage: decompress.py SAVED_DIR OUT.safetensors

For each config group of SAVED_DIR's quantization_config, takes the group's
`format` (or, if absent, the one compressed-tensors infers for a Linear), finds
its compressor in compressed-tensors' registry, and calls the compressor's
`decompress(state_dict, scheme)` on every module the group targets. This is the
model-free path of compressed_tensors' CompressedTensorsDequantizer, with two
changes: no cast, and a module counts as quantized only if it stores
weight_packed or weight_scale (name-only matching of "Linear" targets also hits
the `.weight` of LayerNorms and embeddings). Writes each result, in the dtype
compressed-tensors returns (D for INT and FP8, BF16 for NVFP4/MX), under the
original name `<module>.weight`. Nothing else is written: this is the R' the
Rust side compares with.

Exit 1 (one line, FAIL: ...) if the config is missing, a module's compression
parameters are missing, or no module was decompressed.
"""

import collections
import json
import sys
from pathlib import Path


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def main():
    if len(sys.argv) != 3:
        raise SystemExit(f"usage: {sys.argv[0]} SAVED_DIR OUT.safetensors")
    saved, out = Path(sys.argv[1]), Path(sys.argv[2])

    import compressed_tensors
    import torch
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.compressors.format import infer_module_format
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.utils.match import match_quantizable_tensors
    from safetensors.torch import load_file, save_file

    qdata = json.loads((saved / "config.json").read_text()).get("quantization_config")
    if not qdata:
        fail(f"{saved}/config.json has no quantization_config")
    qcfg = QuantizationConfig.model_validate(qdata)
    tensors = {}
    for st in sorted(saved.glob("*.safetensors")):
        tensors.update(load_file(st))

    result, formats = {}, collections.Counter()
    for gname, scheme in qcfg.config_groups.items():
        fmt = scheme.format or infer_module_format(torch.nn.Linear, scheme)
        fmt = getattr(fmt, "value", fmt)
        compressor = BaseCompressor.get_value_from_registry(fmt)
        params = compressor.compression_param_names(scheme)
        for module, _ in match_quantizable_tensors(tensors, ignore=qcfg.ignore, targets=scheme.targets,
                                                    param_targets=[params[0]]):
            if f"{module}.weight" in result:
                continue  # claimed by an earlier group
            if not any(f"{module}.{p}" in tensors for p in ("weight_packed", "weight_scale")):
                continue  # e.g. a LayerNorm/Embedding `.weight`: "Linear" targets match every name here
            try:
                state = {p: tensors[f"{module}.{p}"] for p in params}
            except KeyError as e:
                fail(f"{module} ({gname}, {fmt}): missing {e.args[0]}")
            w = compressor.decompress(state, scheme)["weight"]
            result[f"{module}.weight"] = w.contiguous()
            formats[f"{fmt}->{str(w.dtype).removeprefix('torch.')}"] += 1
    if not result:
        fail(f"no quantized module found in {saved}")
    save_file(result, out, metadata={"producer": f"compressed-tensors {compressed_tensors.__version__} decompress",
                                     "source": str(saved)})
    print(f"ok: {len(result)} weights decompressed ({dict(formats)}) -> {out}")


if __name__ == "__main__":
    main()
