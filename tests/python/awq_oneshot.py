#!/usr/bin/env python3
"""quantscope's AWQ save against llm-compressor 0.14's oneshot with AWQModifier, end to end.

Usage: awq_oneshot.py (--quantscope BIN | --reference-only) [--calibration FILE] [--cache DIR]
       [--out DIR] [--variant gqa|mha ...]

The model is a tiny seeded random LlamaForCausalLM: hidden 256, intermediate 512, 2 layers, 4 heads,
f32, an untied lm_head, torch seed 0, RMSNorm weights multiplied by 1 + 0.1·N(0, 1) so that the norm
fold shows, and a WordLevel tokenizer over the first 16 lines of --calibration (the 16 samples).
Variant `gqa` has 2 key/value heads, so llm-compressor drops the v_proj -> o_proj mapping
(3 mappings per layer); `mha` has 4, so it keeps it (4 per layer).

1. The reference, built once per variant into --cache/VARIANT (default
   ~/.cache/quantscope-ci/awq-oneshot) and reused while its `.complete` stamp holds the same
   parameters and library versions:
     original/               the float model, with tokenizer.json
     lines.txt               the 16 samples, one per line
     awq/                    llm-compressor's
         oneshot(model=original, dataset=ds, processor=tokenizer,
                  recipe=AWQModifier(scheme="W4A16_ASYM", targets=["Linear"], ignore=["lm_head"]),
                  num_calibration_samples=16, max_seq_length=128, batch_size=1,
                  shuffle_calibration_samples=False)
                             saved with save_compressed=True; `ds` holds one row per sample, tokenized
                             alone (no padding, no BOS); unshuffled means longest first, which only
                             changes summation order. IntermediatesCache.pin_memory is made a no-op
                             (it needs CUDA).
     awq_scales.safetensors  the smoothing scales AWQ chose, F64, keyed by the smooth layer's name;
                             recorded by wrapping AWQModifier._compute_best_scale
     rtn/                    llm-compressor's data-free W4A16_ASYM save (round-to-nearest)
   Each run checks that the original weights smoothed with these scales and quantized by min-max
   give back awq/'s norms, weight_scale and INT4 codes bit for bit.
2. quantscope's save, per variant (skipped with --reference-only):
     BIN quantize original OUT/awq --scheme int4:group128:awq:asym --inputs lines.txt
         --max-samples 16 --awq-scales OUT/awq_scales.safetensors
3. Checks against llm-compressor's, one `ok:`/`FAIL:` line each: the same tensor names, dtypes and
   shapes; the same AWQ scale keys, max relative difference <= 1e-5; smoothed norm weights and
   weight_scale within 1e-5 relative (bit-identical shares printed); zero points and INT4 codes
   >= 99.9 % identical; embeddings, model.norm, lm_head and weight_shape bit-identical; the same
   quantization_config (but `version`); transformers loads the save and the mean cosine of its
   logits on the 16 samples against the float original's is within 0.001 of llm-compressor's.
   On these models llm-compressor's AWQ and round-to-nearest saves are closer than that (0.0003 for
   gqa, 0.0008 for mha), so the tensor checks are what tells AWQ apart.
   The last line is `awq end to end: N checks, F failed`; exit 1 if F > 0.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CACHE = Path.home() / ".cache" / "quantscope-ci" / "awq-oneshot"
MARKER = ".complete"
SAMPLES = 16
MAX_SEQ = 128
MODEL = {"hidden": 256, "intermediate": 512, "layers": 2, "heads": 4, "seed": 0, "norm_noise": 0.1}
KV_HEADS = {"gqa": 2, "mha": 4}
GROUP = 128
MAX_REL = 1e-5
MIN_SHARE = 0.999
MAX_COS_GAP = 0.001
QPARAMS = ("weight_packed", "weight_scale", "weight_zero_point")
SMOOTHED_NORMS = ("input_layernorm.weight", "post_attention_layernorm.weight")


def versions():
    import compressed_tensors
    import transformers
    from importlib.metadata import version
    return {"llmcompressor": version("llmcompressor"), "compressed_tensors": compressed_tensors.__version__,
            "transformers": transformers.__version__, "torch": torch.__version__}


def calibration_lines(path: Path):
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[:SAMPLES]


def one_line(e):
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0] if msg else ''}"


# --- the reference ---------------------------------------------------------------------------------
def build_tokenizer(lines):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Whitespace()
    words = dict.fromkeys(w for line in lines for w, _ in pre.pre_tokenize_str(line))  # first-seen order
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "<s>", "</s>", *words])}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="<s>", eos_token="</s>")


def build_model(kv_heads, vocab_size):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(MODEL["seed"])
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=MODEL["hidden"], intermediate_size=MODEL["intermediate"],
                      num_hidden_layers=MODEL["layers"], num_attention_heads=MODEL["heads"],
                      num_key_value_heads=kv_heads, max_position_embeddings=256, rms_norm_eps=1e-6,
                      tie_word_embeddings=False, torch_dtype="float32")
    model = LlamaForCausalLM(cfg).to(torch.float32).eval()
    with torch.no_grad():  # RMSNorm weights start at exactly 1.0
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight"):
                p.mul_(1 + MODEL["norm_noise"] * torch.randn_like(p))
    return model


def reference_params(variant, lines):
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    return {"variant": variant, **MODEL, "kv_heads": KV_HEADS[variant], "samples": len(lines),
            "max_seq_length": MAX_SEQ, "lines_sha256": digest, **versions()}


@contextlib.contextmanager
def recording_scales():
    """Wraps AWQModifier._compute_best_scale and _compute_loss; yields the list of chosen scales."""
    from llmcompressor.modifiers.transform.awq.base import AWQModifier

    chosen, losses = [], []
    best_scale, compute_loss = AWQModifier._compute_best_scale, AWQModifier._compute_loss

    def loss_hook(self, *args, **kwargs):
        losses.append(compute_loss(self, *args, **kwargs))
        return losses[-1]

    def scale_hook(self, mapping, *args, **kwargs):
        losses.clear()
        scales = best_scale(self, mapping, *args, **kwargs)
        best = losses.index(min(losses))  # the search keeps the first strict minimum
        ratio, duo = self._get_grid_search_params()[best]
        chosen.append({"smooth": mapping.smooth_name, "balance": [n.rsplit(".", 1)[1] for n in mapping.balance_names],
                       "best": best, "ratio": ratio, "duo": duo, "scales": scales.detach().to(torch.float64)})
        return scales

    AWQModifier._compute_best_scale, AWQModifier._compute_loss = scale_hook, loss_hook
    try:
        yield chosen
    finally:
        AWQModifier._compute_best_scale, AWQModifier._compute_loss = best_scale, compute_loss


def llmcompressor_awq(dst: Path, lines):
    """AWQ oneshot of dst/original into dst/awq and dst/awq_scales.safetensors; returns (mappings, seconds)."""
    from datasets import Dataset
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # llm-compressor logs to the sys.stdout it sees when imported: make that stderr.
    with contextlib.redirect_stdout(sys.stderr):
        from llmcompressor import oneshot
        from llmcompressor.modifiers.awq import AWQModifier
        from llmcompressor.pipelines.cache import IntermediatesCache
    IntermediatesCache.pin_memory = lambda self, *a, **k: None  # CUDA only; changes no number

    tok = AutoTokenizer.from_pretrained(dst / "original")
    enc = [tok(line, truncation=True, max_length=MAX_SEQ) for line in lines]
    ds = Dataset.from_dict({k: [e[k] for e in enc] for k in ("input_ids", "attention_mask")})
    # oneshot re-reads config.json from the model's name_or_path: the model must come from disk.
    model = AutoModelForCausalLM.from_pretrained(dst / "original", dtype=torch.float32)
    t0 = time.monotonic()
    with recording_scales() as chosen, contextlib.redirect_stdout(sys.stderr):
        oneshot(model=model, dataset=ds, processor=tok,
                recipe=AWQModifier(scheme="W4A16_ASYM", targets=["Linear"], ignore=["lm_head"]),
                num_calibration_samples=len(lines), max_seq_length=MAX_SEQ, batch_size=1,
                shuffle_calibration_samples=False)
    elapsed = time.monotonic() - t0
    model.save_pretrained(dst / "awq", save_compressed=True)
    tok.save_pretrained(dst / "awq")
    save_file({c["smooth"]: c["scales"].contiguous() for c in chosen}, str(dst / "awq_scales.safetensors"))
    return [{k: v for k, v in c.items() if k != "scales"} for c in chosen], elapsed


def llmcompressor_rtn(dst: Path):
    """llm-compressor's data-free W4A16_ASYM save of dst/original into dst/rtn."""
    from transformers import AutoModelForCausalLM

    with contextlib.redirect_stdout(sys.stderr):
        from llmcompressor import oneshot
        from llmcompressor.modifiers.quantization import QuantizationModifier
    model = AutoModelForCausalLM.from_pretrained(dst / "original", dtype=torch.float32)
    with contextlib.redirect_stdout(sys.stderr):
        oneshot(model=model, recipe=QuantizationModifier(targets="Linear", scheme="W4A16_ASYM", ignore=["lm_head"]))
    model.save_pretrained(dst / "rtn", save_compressed=True)


def reference(variant, lines, cache: Path):
    """The cached reference folder of a variant, built if missing or stale; returns (folder, stamp)."""
    dst = cache / variant
    want = reference_params(variant, lines)
    if (dst / MARKER).exists():
        stamp = json.loads((dst / MARKER).read_text())
        if stamp.get("params") == want:
            print(f"reference {variant}: {dst} cached (oneshot took {stamp['oneshot_s']:.1f}s when built)", flush=True)
            return dst, stamp
    tmp = dst.with_name(variant + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = build_tokenizer(lines)
    model = build_model(KV_HEADS[variant], len(tok))
    model.save_pretrained(tmp / "original")
    tok.save_pretrained(tmp / "original")
    (tmp / "lines.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    mappings, elapsed = llmcompressor_awq(tmp, lines)
    llmcompressor_rtn(tmp)
    stamp = {"params": want, "oneshot_s": round(elapsed, 2), "mappings": mappings}
    (tmp / MARKER).write_text(json.dumps(stamp, indent=1) + "\n")
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    print(f"reference {variant}: llm-compressor AWQ oneshot on {len(lines)} samples took {elapsed:.1f}s -> {dst}",
          flush=True)
    return dst, stamp


def print_mappings(variant, stamp):
    m = stamp["mappings"]
    print(f"reference {variant}: {len(m)} mappings; candidate chosen of 20 (#0 identity, #i: x^r/w^(1-r), "
          f"r = (i-1)/18): {[c['best'] for c in m]}", flush=True)
    for c in m:
        print(f"  {c['smooth']} -> {','.join(c['balance'])}: #{c['best']} (ratio {c['ratio']:.4f}"
              f"{', duo' if c['duo'] else ''})", flush=True)


# --- reading saves ---------------------------------------------------------------------------------
def load_tensors(path: Path):
    """All tensors of a .safetensors file or of a folder's *.safetensors ({} if there are none)."""
    from safetensors.torch import load_file
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path] if path.exists() else []
    out = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def linears(tensors):
    return sorted(n[: -len(".weight_packed")] for n in tensors if n.endswith(".weight_packed"))


def qparam(t, layer, what):
    """A Linear's weight_scale bits, zero points or INT4 codes from a save; None if unreadable."""
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
    try:
        scale = t[f"{layer}.weight_scale"]
        if what == "scale":
            return scale.view(torch.int32) if scale.dtype == torch.float32 else None
        rows, cols = t[f"{layer}.weight_shape"].tolist()
        if what == "zero_point":
            return unpack_from_int32(t[f"{layer}.weight_zero_point"], 4, torch.Size([rows, scale.shape[1]]),
                                     packed_dim=0)
        return unpack_from_int32(t[f"{layer}.weight_packed"], 4, torch.Size([rows, cols]))
    except (KeyError, RuntimeError, ValueError, TypeError):
        return None


def max_rel(actual, expected):
    if actual is None or actual.shape != expected.shape:
        return float("inf")
    e = expected.double()
    return float(((actual.double() - e).abs() / e.abs().clamp_min(1e-30)).max()) if e.numel() else 0.0


def same_bits(actual, expected):
    return (actual is not None and actual.dtype == expected.dtype and actual.shape == expected.shape
            and actual.numpy().tobytes() == expected.numpy().tobytes())


def identical(te, ta, layers, what):
    """(identical, total) elements of one quantization parameter over all layers."""
    same = total = 0
    for layer in layers:
        e, a = qparam(te, layer, what), qparam(ta, layer, what)
        total += e.numel()
        if a is not None and a.shape == e.shape:
            same += int((a == e).sum())
    return same, total


# --- the reference's own check ---------------------------------------------------------------------
def mapping_table(layers):
    """llm-compressor's default Llama mappings, in the order AWQ applies them within a layer."""
    for i in range(layers):
        p = f"model.layers.{i}."
        yield p + "input_layernorm", [p + "self_attn." + n for n in ("q_proj", "k_proj", "v_proj")]
        yield p + "self_attn.v_proj", [p + "self_attn.o_proj"]
        yield p + "post_attention_layernorm", [p + "mlp.gate_proj", p + "mlp.up_proj"]
        yield p + "mlp.up_proj", [p + "mlp.down_proj"]


def smoothed(original, scales):
    """Balance columns times s, then the smooth layer (norm, or output rows) over s; f64, rounded once."""
    w = dict(original)
    for smooth, balance in mapping_table(MODEL["layers"]):
        s = scales.get(smooth)
        if s is None:
            continue
        for b in balance:
            w[b + ".weight"] = (w[b + ".weight"] * s.view(1, -1)).to(torch.float32)
        g = w[smooth + ".weight"]
        w[smooth + ".weight"] = (g / (s if g.ndim == 1 else s.view(-1, 1))).to(torch.float32)
    return w


def min_max_int4(w):
    """compressed-tensors' memoryless min-max, group 128, asymmetric INT4: (codes int8, scale f32)."""
    rows, cols = w.shape
    g = w.reshape(rows, cols // GROUP, GROUP)
    lo, hi = g.amin(-1).clamp(max=0.0), g.amax(-1).clamp(min=0.0)
    scale = (hi - lo) / 15.0
    zp = torch.round(torch.clamp(-8 - lo / scale, -8, 7))
    scale = torch.where(scale == 0, torch.finfo(torch.float32).eps, scale)
    q = torch.round(torch.clamp(g / scale[..., None] + zp[..., None], -8, 7))
    return q.reshape(rows, cols).to(torch.int8), scale


def check_reference(variant, ref: Path, report):
    """original + awq_scales.safetensors, smoothed and quantized, give awq/ back bit for bit."""
    saved = load_tensors(ref / "awq")
    w = smoothed(load_tensors(ref / "original"), load_tensors(ref / "awq_scales.safetensors"))
    norms = [n for n in saved if n.endswith(SMOOTHED_NORMS)]
    same_norms = sum(same_bits(w[n], saved[n]) for n in norms)
    layers = linears(saved)
    same_scales = same_codes = total = 0
    for layer in layers:
        q, scale = min_max_int4(w[layer + ".weight"])
        same_scales += same_bits(scale, saved[layer + ".weight_scale"])
        same_codes += int((q == qparam(saved, layer, "codes")).sum())
        total += q.numel()
    ok = same_norms == len(norms) and same_scales == len(layers) and same_codes == total
    report(ok, f"{variant}: reference: original/ smoothed with awq_scales.safetensors and quantized by min-max "
               f"gives awq/'s {same_norms}/{len(norms)} smoothed norms and {same_scales}/{len(layers)} weight_scale "
               f"bit for bit, and {same_codes}/{total} INT4 codes over {len(layers)} Linears")



# --- quantscope against llm-compressor -------------------------------------------------------------
def quantscope_awq(binary, ref: Path, out: Path, variant, report):
    """`BIN quantize` with AWQ into out/awq and out/awq_scales.safetensors; None (and a FAIL) if it fails."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "awq_scales.safetensors").unlink(missing_ok=True)
    cmd = [str(binary), "quantize", str(ref / "original"), str(out / "awq"), "--scheme", "int4:group128:awq:asym",
           "--inputs", str(ref / "lines.txt"), "--max-samples", str(SAMPLES),
           "--awq-scales", str(out / "awq_scales.safetensors")]
    t0 = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        err_lines = res.stderr.strip().splitlines() or [""]
        err = next((line for line in err_lines if line.lower().startswith("error")), err_lines[-1])
        report(False, f"{variant}: {' '.join(cmd)} exited {res.returncode}: {err}")
        return None
    print(f"quantscope: {' '.join(cmd)} ({time.monotonic() - t0:.1f}s)", flush=True)
    return out


def check_layout(variant, te, ta, report):
    missing, extra = sorted(set(te) - set(ta)), sorted(set(ta) - set(te))
    layout = [n for n in sorted(set(te) & set(ta)) if (te[n].dtype, te[n].shape) != (ta[n].dtype, ta[n].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors missing, e.g. {', '.join(missing[:3])}")
    if extra:
        problems.append(f"{len(extra)} unexpected tensors, e.g. {', '.join(extra[:3])}")
    if layout:
        n = layout[0]
        problems.append(f"{len(layout)} with another dtype/shape, e.g. {n}: expected {te[n].dtype}{list(te[n].shape)}"
                        f", actual {ta[n].dtype}{list(ta[n].shape)}")
    report(not problems, f"{variant}: tensors: " + ("; ".join(problems) if problems else
           f"{len(te)} with the same names, dtypes and shapes ({len(linears(te))} quantized Linears)"))


def check_awq_scales(variant, se, sa, report):
    if sorted(se) != sorted(sa):
        missing, extra = sorted(set(se) - set(sa)), sorted(set(sa) - set(se))
        report(False, f"{variant}: AWQ scales: keys differ; missing {missing}, unexpected {extra}")
        return
    rel = {k: max_rel(sa[k], se[k]) for k in se}
    worst = max(rel, key=rel.get)
    not_f64 = [k for k in sa if sa[k].dtype != torch.float64]
    report(rel[worst] <= MAX_REL and not not_f64,
           f"{variant}: AWQ scales: the same {len(se)} keys; max relative difference {rel[worst]:.2e} ({worst}; "
           f"need <= {MAX_REL:g})" + (f"; not F64: {', '.join(not_f64)}" if not_f64 else ""))


def check_norms(variant, te, ta, report):
    names = [n for n in te if n.endswith(SMOOTHED_NORMS)]
    rel = max((max_rel(ta.get(n), te[n]) for n in names), default=0.0)
    same = sum(same_bits(ta.get(n), te[n]) for n in names)
    report(rel <= MAX_REL, f"{variant}: smoothed norm weights: max relative difference {rel:.2e} over {len(names)} "
                           f"(need <= {MAX_REL:g}); {same}/{len(names)} bit-identical")


def check_weight_scales(variant, te, ta, layers, report):
    rel = max((max_rel(ta.get(f"{n}.weight_scale"), te[f"{n}.weight_scale"]) for n in layers), default=0.0)
    same, total = identical(te, ta, layers, "scale")
    report(rel <= MAX_REL, f"{variant}: weight_scale: {same}/{total} ({100 * same / total:.3f} %) bit-identical, max "
                           f"relative difference {rel:.2e} (need <= {MAX_REL:g})")


def check_share(variant, te, ta, layers, what, label, report):
    same, total = identical(te, ta, layers, what)
    report(same >= MIN_SHARE * total, f"{variant}: {label}: {same}/{total} ({100 * same / total:.3f} %) identical "
                                      f"over {len(layers)} Linears (need >= {100 * MIN_SHARE:.1f} %)")


def check_others(variant, te, ta, report):
    names = [n for n in te if n.rpartition(".")[2] not in QPARAMS and not n.endswith(SMOOTHED_NORMS)]
    differ = [n for n in names if not same_bits(ta.get(n), te[n])]
    kinds = sorted({n.rpartition(".")[2] if n.endswith("weight_shape") else n for n in names})
    report(not differ, f"{variant}: other tensors: " + (f"{len(differ)} of {len(names)} differ, e.g. "
           f"{', '.join(differ[:3])}" if differ else f"{len(names)} bit-identical ({', '.join(kinds)})"))


def check_config(variant, exp: Path, act: Path, report):
    """quantization_config on compare_saves.py's fields (the ones loaders read)."""
    from compare_saves import config_diffs, read_qconfig

    diffs = config_diffs(read_qconfig(exp), read_qconfig(act))
    report(not diffs, f"{variant}: quantization_config: " + ("; ".join(diffs) if diffs else
           "equal on every field a loader reads (compare_saves.py)"))


def compare(variant, ref: Path, out: Path, report):
    te, ta = load_tensors(ref / "awq"), load_tensors(out / "awq")
    layers = linears(te)
    check_layout(variant, te, ta, report)
    check_awq_scales(variant, load_tensors(ref / "awq_scales.safetensors"),
                     load_tensors(out / "awq_scales.safetensors"), report)
    check_norms(variant, te, ta, report)
    check_weight_scales(variant, te, ta, layers, report)
    check_share(variant, te, ta, layers, "zero_point", "zero points", report)
    check_share(variant, te, ta, layers, "codes", "INT4 codes", report)
    check_others(variant, te, ta, report)
    check_config(variant, ref / "awq", out / "awq", report)


# --- transformers on the saves ---------------------------------------------------------------------
def token_logits(folder: Path, inputs):
    """Logits [tokens, vocab] of transformers' load of folder over every sample, concatenated."""
    from transformers import AutoModelForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    # transformers fills missing parameters with uninitialized memory and goes on.
    bad = [k for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") for k in info.get(kind) or []]
    if bad:
        raise RuntimeError(f"{len(bad)} missing/unexpected/mismatched keys, e.g. {bad[0]}")
    with torch.no_grad():
        return torch.cat([model.eval()(input_ids=ids, use_cache=False).logits[0] for ids in inputs])


def all_logits(ref: Path, saves):
    """{label: logits or the one-line error} for the float original and each save."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ref / "original")
    lines = (ref / "lines.txt").read_text(encoding="utf-8").splitlines()
    inputs = [tok(line, truncation=True, max_length=MAX_SEQ, return_tensors="pt")["input_ids"] for line in lines]
    out = {}
    for label, folder in {"original": ref / "original", **saves}.items():
        try:
            out[label] = token_logits(folder, inputs)
        except Exception as e:  # noqa: BLE001 - reported as one line
            out[label] = one_line(e)
    return out


def mean_cosine(logits, base):
    return torch.nn.functional.cosine_similarity(logits.double(), base.double(), dim=-1).mean().item()


def logits_text(logits, labels):
    base = logits["original"]
    cos = ", ".join(f"{k} {mean_cosine(logits[k], base):.6f}" if torch.is_tensor(logits[k]) else
                    f"{k} n/a ({logits[k]})" for k in labels)
    return f"mean cosine of the logits against the float original's over {base.shape[0]} tokens: {cos}"


def check_logits(variant, logits, report):
    qs, llmc = logits["quantscope"], logits["llm-compressor"]
    if not torch.is_tensor(qs) or not torch.is_tensor(llmc):
        report(False, f"{variant}: transformers on quantscope's save: {qs if isinstance(qs, str) else llmc}")
        return
    base = logits["original"]
    gap = abs(mean_cosine(qs, base) - mean_cosine(llmc, base))
    mad = float((qs - llmc).abs().max()) if qs.shape == llmc.shape else float("inf")
    rtn = logits["round-to-nearest"]
    rtn_mad = f"{float((rtn - llmc).abs().max()):.3g}" if torch.is_tensor(rtn) else "n/a"
    report(gap <= MAX_COS_GAP, f"{variant}: logits: quantscope vs llm-compressor max abs difference {mad:.3g} "
           f"(round-to-nearest vs llm-compressor {rtn_mad}); "
           + logits_text(logits, ("quantscope", "llm-compressor", "round-to-nearest"))
           + f" (need |quantscope - llm-compressor| <= {MAX_COS_GAP})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quantscope", type=Path, help="the quantscope binary")
    ap.add_argument("--reference-only", action="store_true", help="build (or reuse) and check the references only")
    ap.add_argument("--calibration", type=Path, default=REPO / "sample-models" / "calibration.txt")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where llm-compressor's saves are kept")
    ap.add_argument("--out", type=Path, help="keep quantscope's saves in OUT/VARIANT (default: a temporary folder)")
    ap.add_argument("--variant", action="append", choices=sorted(KV_HEADS), help="default: all")
    a = ap.parse_args()
    if not a.quantscope and not a.reference_only:
        ap.error("--quantscope BIN is needed unless --reference-only is given")

    t_start = time.monotonic()
    lines = calibration_lines(a.calibration)
    checks, failures = [], []

    def report(ok, msg):
        print(f"{'ok' if ok else 'FAIL'}: {msg}", flush=True)
        checks.append(msg)
        if not ok:
            failures.append(msg)

    with tempfile.TemporaryDirectory(prefix="awq-oneshot-") as scratch:
        for variant in a.variant or sorted(KV_HEADS):
            ref, stamp = reference(variant, lines, a.cache)
            print_mappings(variant, stamp)
            check_reference(variant, ref, report)
            saves = {"llm-compressor": ref / "awq", "round-to-nearest": ref / "rtn"}
            out = None if a.reference_only else quantscope_awq(
                a.quantscope, ref, (a.out or Path(scratch)) / variant, variant, report)
            if out is not None:
                compare(variant, ref, out, report)
                saves["quantscope"] = out / "awq"
            logits = all_logits(ref, saves)
            if out is not None:
                check_logits(variant, logits, report)
            else:
                print(f"reference {variant}: " + logits_text(logits, ("llm-compressor", "round-to-nearest")),
                      flush=True)

    print(f"awq end to end: {len(checks)} checks, {len(failures)} failed"
          f" ({'reference only, ' if a.reference_only else ''}{time.monotonic() - t_start:.0f}s)", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
