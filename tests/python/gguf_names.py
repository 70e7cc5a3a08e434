"""Writes JSON fixtures pairing Hugging Face tensor names with GGUF tensor names.

Usage: python tests/python/gguf_names.py OUTDIR [--models DIR] [--sdist DIR] [--minilm DIR]
(OUTDIR is engine/tests/data/gguf/names in the repository; run with the venv of gguf_venv.sh.)

The gguf-py used is the one vendored with llama.cpp in the llama-cpp-python 0.3.36 sdist (the
package convert_hf_to_gguf.py itself imports; its pyproject says 0.19.0, but its
tensor_mapping.py is newer than PyPI's gguf 0.19.0).

1. <family>.json for llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3, bert: the tensor
   names of a 2-layer transformers model of that class (built on the meta device, so no weights;
   untied output so that lm_head appears), each mapped with gguf-py's own
   `gguf.get_tensor_name_map(arch, 2).get_name(name, try_suffixes=(".weight", ".bias"))`, where
   arch is the MODEL_ARCH of the converter class convert_hf_to_gguf.py registers for that
   Hugging Face architecture (MistralForCausalLM converts as `llama`). Names the map does not
   know are listed under "unmapped" (the converter drops or handles them itself).
2. tiny-llama.converted.json and minilm.converted.json: the real conversions of
   make_gguf_models.py. The converter's model class is run in-process on the Hugging Face folder
   with its modify_tensors wrapped, which records each (safetensors name -> GGUF name) pair the
   converter produces; the GGUF names must be exactly the tensors of the converted F32 file.
   Each pair carries the GGUF type and shape (ne[], innermost first) in the F32 and F16 files
   and the value transform measured on the F32 file against the safetensors tensor:
   "identity", or "permute(n_head=8)" / "permute(n_head_kv=4)" (the Q/K row permutation for
   rope, GGUF.md), checked bit for bit.
"""
import argparse
import json
import logging
import os
import sys
from pathlib import Path

CACHE = Path(os.environ.get("QUANTSCOPE_CI_CACHE", Path.home() / ".cache/quantscope-ci"))
REPO = Path(__file__).resolve().parents[2]

FAMILIES = {
    # fixture name: (transformers class, config class, extra config)
    "llama": ("LlamaForCausalLM", "LlamaConfig", {}),
    "mistral": ("MistralForCausalLM", "MistralConfig", {}),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", {}),
    "qwen3": ("Qwen3ForCausalLM", "Qwen3Config", {}),
    "gemma": ("GemmaForCausalLM", "GemmaConfig", {}),
    "gemma2": ("Gemma2ForCausalLM", "Gemma2Config", {}),
    "gemma3": ("Gemma3ForCausalLM", "Gemma3TextConfig", {}),
    "bert": ("BertModel", "BertConfig", {}),
}


def setup_vendored(sdist: Path):
    llama_cpp = sdist / "vendor/llama.cpp"
    sys.path[:0] = [str(llama_cpp / "gguf-py"), str(llama_cpp)]
    import gguf
    if not Path(gguf.__file__).resolve().is_relative_to(llama_cpp.resolve()):
        raise SystemExit(f"expected the vendored gguf-py, got {gguf.__file__}")
    return llama_cpp


def family_fixture(key, n_layers=2):
    import torch
    import transformers
    import gguf
    from conversion import get_model_class

    cls_name, cfg_name, extra = FAMILIES[key]
    cfg_cls = getattr(transformers, cfg_name)
    common = dict(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=n_layers,
                  num_attention_heads=4)
    if key != "bert":
        common.update(num_key_value_heads=2, head_dim=16, tie_word_embeddings=False)
    cfg = cfg_cls(**common, **extra)
    with torch.device("meta"):
        model = getattr(transformers, cls_name)(cfg)
    names = list(model.state_dict().keys())
    conv = get_model_class(cls_name)
    arch = conv.model_arch
    tmap = gguf.get_tensor_name_map(arch, n_layers)
    pairs, unmapped = [], []
    for n in names:
        g = tmap.get_name(n, try_suffixes=(".weight", ".bias"))
        if g is None:
            unmapped.append(n)
        else:
            pairs.append({"hf": n, "gguf": g})
    return {
        "source": "gguf-py TensorNameMap (gguf.get_tensor_name_map(arch, n_layers).get_name(hf, "
                  "try_suffixes=('.weight', '.bias'))), llama.cpp vendored in llama-cpp-python 0.3.36",
        "hf_architecture": cls_name,
        "converter_class": conv.__name__,
        "arch": gguf.MODEL_ARCH_NAMES[arch],
        "n_layers": n_layers,
        "transformers": transformers.__version__,
        "pairs": pairs,
        "unmapped": unmapped,
    }


def converted_fixture(hf_dir: Path, f32: Path, f16: Path, label: str):
    import numpy as np
    import torch
    import gguf
    from safetensors.numpy import load_file
    from conversion import ModelBase, ModelType, get_model_architecture, get_model_class

    hparams = ModelBase.load_hparams(hf_dir, False)
    hf_arch = get_model_architecture(hparams, ModelType.TEXT)
    cls = get_model_class(hf_arch)
    recorded = []
    orig = cls.modify_tensors

    def hooked(self, data_torch, name, bid):
        for new_name, d in orig(self, data_torch, name, bid):
            recorded.append((name, new_name))
            yield new_name, d

    cls.modify_tensors = hooked
    try:
        with torch.inference_mode():
            m = cls(hf_dir, gguf.LlamaFileType.ALL_F32, Path(os.devnull), dry_run=True)
            m.prepare_tensors()
    finally:
        cls.modify_tensors = orig

    r32, r16 = gguf.GGUFReader(f32), gguf.GGUFReader(f16)
    t32 = {t.name: t for t in r32.tensors}
    t16 = {t.name: t for t in r16.tensors}
    produced = [g for _, g in recorded]
    if sorted(produced) != sorted(t32) or sorted(produced) != sorted(t16):
        raise SystemExit(f"{label}: the converter's names {sorted(set(produced) ^ set(t32))} "
                         f"do not match the tensors of {f32.name}")
    hf = load_file(str(hf_dir / "model.safetensors"))
    n_head = hparams.get("num_attention_heads")
    n_head_kv = hparams.get("num_key_value_heads", n_head)

    def permute(w, n):
        return w.reshape(n, 2, w.shape[0] // n // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    pairs = []
    for hf_name, g in recorded:
        src = hf[hf_name].astype(np.float32)
        got = np.asarray(t32[g].data, dtype=np.float32).reshape(src.shape)
        transform = None
        cands = [("identity", src)]
        if n_head and src.ndim == 2 and src.shape[0] % (2 * n_head) == 0:
            cands.append((f"permute(n_head={n_head})", permute(src, n_head)))
        if n_head_kv and n_head_kv != n_head and src.ndim == 2 and src.shape[0] % (2 * n_head_kv) == 0:
            cands.append((f"permute(n_head_kv={n_head_kv})", permute(src, n_head_kv)))
        for label_t, v in cands:
            if np.array_equal(v.view(np.uint32), got.view(np.uint32)):
                transform = label_t
                break
        if transform is None:
            raise SystemExit(f"{label}: {hf_name} -> {g}: no known transform reproduces the F32 file")
        pairs.append({
            "hf": hf_name, "gguf": g, "hf_shape": list(src.shape),
            "ne": [int(x) for x in t32[g].shape],
            "type_f32_file": t32[g].tensor_type.name, "type_f16_file": t16[g].tensor_type.name,
            "transform": transform,
        })
    dropped = sorted(set(hf) - {h for h, _ in recorded})
    return {
        "source": f"convert_hf_to_gguf.py (llama-cpp-python 0.3.36 sdist), {cls.__name__}."
                  "modify_tensors recorded in-process; checked against the converted files",
        "hf_architecture": hf_arch,
        "converter_class": cls.__name__,
        "arch": gguf.MODEL_ARCH_NAMES[cls.model_arch],
        "files": [f32.name, f16.name],
        "n_head": n_head, "n_head_kv": n_head_kv,
        "pairs": pairs,
        "dropped_by_converter": dropped,
    }


def dumps(obj):
    """JSON with one top-level key per line and one list item per line (small, diff-friendly)."""
    lines = []
    for k, v in obj.items():
        if isinstance(v, list) and v:
            items = ",\n".join("  " + json.dumps(x) for x in v)
            lines.append(f" {json.dumps(k)}: [\n{items}\n ]")
        else:
            lines.append(f" {json.dumps(k)}: {json.dumps(v)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--models", type=Path, default=CACHE / "gguf")
    ap.add_argument("--sdist", type=Path, default=CACHE / "sdist/llama_cpp_python-0.3.36")
    ap.add_argument("--minilm", type=Path, default=REPO / "sample-models/minilm")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    setup_vendored(args.sdist)
    args.outdir.mkdir(parents=True, exist_ok=True)

    def write(name, obj):
        p = args.outdir / name
        p.write_text(dumps(obj))
        n = len(obj["pairs"])
        print(f"{p}: {n} pairs" + (f", unmapped {obj['unmapped']}" if obj.get("unmapped") else "")
              + (f", dropped {obj['dropped_by_converter']}" if obj.get("dropped_by_converter") else ""))

    for key in FAMILIES:
        write(f"{key}.json", family_fixture(key))
    m = args.models
    write("tiny-llama.converted.json", converted_fixture(
        m / "tiny-llama-hf", m / "tiny-llama-f32.gguf", m / "tiny-llama-f16.gguf", "tiny-llama"))
    write("minilm.converted.json", converted_fixture(
        args.minilm, m / "minilm-f32.gguf", m / "minilm-f16.gguf", "minilm"))


if __name__ == "__main__":
    main()
