"""Makes the GGUF models of the llama.cpp reference tests (cached: whatever exists is kept).

Usage: python tests/python/make_gguf_models.py OUTDIR [--sdist DIR] [--minilm DIR]
           [--imatrix-tool BIN] [--threads N]

(run with the venv of gguf_venv.sh: torch, transformers, sentencepiece, numpy).

OUTDIR/
  tiny-llama-hf/           a Llama checkpoint made by transformers (LlamaForCausalLM, seed 0):
                           hidden 256, intermediate 768, 4 layers, 8 heads, 4 KV heads (GQA),
                           head_dim 32, untied output, F32 safetensors; SentencePiece BPE
                           tokenizer (byte fallback) trained on TEXT below, its .model file copied
                           in as tokenizer.model. Every matrix row length (GGUF ne[0]) is 256 or
                           768, so the K-quants apply without fallback.
  tiny-llama-{f32,f16,bf16}.gguf   vendored convert_hf_to_gguf.py --outtype f32/f16/bf16
  minilm-{f32,f16}.gguf            the same converter on sample-models/minilm (BERT, rows of 384/1536)
  imatrix-text.txt         CALIBRATION below (a few hundred tokens)
  tiny-llama.imatrix.gguf  llama-imatrix -m tiny-llama-f16.gguf -f imatrix-text.txt -c 128 -b 128
  tiny-llama.imatrix.dat   the same with --output-format dat (legacy format)

The converter runs as `python convert_hf_to_gguf.py DIR --outfile F --outtype T` with
PYTHONPATH=<sdist>/vendor/llama.cpp/gguf-py. llama-imatrix runs in OUTDIR with relative paths, so
the dataset name recorded in the imatrix (and later in quantized files) is `imatrix-text.txt`.
Every file is written under a temporary name and renamed when complete.
"""
import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("QUANTSCOPE_CI_CACHE", Path.home() / ".cache/quantscope-ci"))
REPO = Path(__file__).resolve().parents[2]

# SentencePiece training lines (deterministic: num_threads=1, fixed order).
TEXT = """\
The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun.
Quantization maps floating point weights to a small set of integer codes and scales.
A block of thirty two weights shares one scale in the legacy formats of llama.cpp.
The k-quants group two hundred fifty six weights into a super block with sub-block scales.
An importance matrix weighs each column by the mean square of the activations it sees.
Rows of a matrix are quantized one after the other, and every row has its own blocks.
Small models are fast to build, quick to convert, and easy to test on a laptop.
The tokenizer splits words into pieces, and unknown bytes fall back to byte tokens.
Attention heads share their keys and values in grouped query attention.
The rotary embedding turns pairs of dimensions by an angle that grows with the position.
Numbers like 1, 2, 3, 42 and 256 appear in text too, as do commas, dots and dashes.
One model, three file types: F32, F16 and BF16, then many quantized presets from each.
"""

# Calibration text for llama-imatrix: a few hundred tokens with this tokenizer (n_ctx 128, so at
# least 256 are needed; this gives several chunks).
CALIBRATION = """\
Once upon a time, in a small village near the river, there lived an old clockmaker. Every morning
he opened the shutters of his shop, wound the tall clock by the door, and sat down at his bench.
The children of the village liked to watch him work. He would take apart a watch, lay every wheel
and spring on a white cloth, clean them one by one, and put them back together so that the watch
ran better than it had on the day it was made. When the children asked him how he knew where each
piece belonged, he laughed and said that a clock tells you its story if you listen long enough.
One winter the river froze, and the mill stopped turning. The miller came to the clockmaker and
asked whether he could build something to keep the wheel moving. The clockmaker thought for three
days. Then he drew a plan of gears and weights, and the whole village helped to build it. By spring
the mill was turning again, and the miller baked bread for everyone. Numbers were carved on the
largest gear: 1, 2, 3, 5, 8, 13, 21, 34 and 55, because the old man liked the way they grew.
Years later, travellers still stop at the mill to read them, and the children who once watched
him now tell the story to their own children, who listen, ask questions, and laugh at the answers.
Quantization, the travellers are told, is a little like that gear: many values, a few steps, and
a scale that makes the steps fit the work. The quick brown fox jumps over the lazy dog.
"""


def log(msg):
    print(f"make_gguf_models: {msg}", file=sys.stderr, flush=True)


def timed(label, fn):
    t0 = time.monotonic()
    fn()
    log(f"{label}: {time.monotonic() - t0:.1f} s")


def make_tokenizer(hf_dir: Path):
    import sentencepiece as spm

    # sentence_iterator + model_writer: no file names (temporary paths) end up in the .model's
    # trainer spec, so the file is byte-identical from run to run.
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter((TEXT + CALIBRATION).splitlines()), model_writer=buf,
        model_type="bpe", vocab_size=512, byte_fallback=True, character_coverage=1.0,
        num_threads=1, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, split_digits=True, minloglevel=2)
    (hf_dir / "tokenizer.model").write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_file=str(hf_dir / "tokenizer.model"))
    # The converter reads add_bos/eos and the special tokens from tokenizer_config.json.
    (hf_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False,
        "model_max_length": 2048, "clean_up_tokenization_spaces": False,
    }, indent=2) + "\n")
    return sp.get_piece_size()


def make_tiny_llama(hf_dir: Path):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tmp = hf_dir.with_name(hf_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vocab = make_tokenizer(tmp)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=4, head_dim=32, max_position_embeddings=2048,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
        initializer_range=0.02, rope_theta=10000.0)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    # The default init leaves RMSNorm weights at 1: give them seeded values so that a reader
    # that skips or mislabels a norm cannot pass by accident.
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
    model.save_pretrained(tmp, safe_serialization=True)
    shutil.rmtree(hf_dir, ignore_errors=True)  # an incomplete folder (no model.safetensors)
    os.replace(tmp, hf_dir)


def convert(llama_cpp: Path, py: str, src: Path, dst: Path, outtype: str):
    partial = dst.with_name(dst.name + ".partial")
    env = dict(os.environ, PYTHONPATH=str(llama_cpp / "gguf-py"), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", NO_LOCAL_GGUF="")
    cmd = [py, str(llama_cpp / "convert_hf_to_gguf.py"), str(src), "--outfile", str(partial),
           "--outtype", outtype]
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    logf = dst.with_name(dst.name + ".convert.log")
    logf.write_text(r.stdout)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:])
        raise SystemExit(f"convert_hf_to_gguf.py failed on {src} ({outtype}); log: {logf}")
    os.replace(partial, dst)


def make_imatrix(tool: Path, out: Path, model: str, fmt: str, name: str, threads: int):
    partial = name + ".partial"
    cmd = [str(tool), "-m", model, "-f", "imatrix-text.txt", "-o", partial, "--output-format", fmt,
           "-c", "128", "-b", "128", "-t", str(threads), "--seed", "0", "--no-ppl"]
    r = subprocess.run(cmd, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (out / (name + ".log")).write_text(" ".join(cmd) + "\n" + r.stdout)
    if r.returncode != 0 or not (out / partial).exists():
        sys.stderr.write(r.stdout[-4000:])
        raise SystemExit(f"llama-imatrix failed ({fmt}); log: {out / (name + '.log')}")
    os.replace(out / partial, out / name)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--sdist", type=Path, default=CACHE / "sdist/llama_cpp_python-0.3.36")
    ap.add_argument("--minilm", type=Path, default=REPO / "sample-models/minilm")
    ap.add_argument("--imatrix-tool", type=Path, default=CACHE / "llama-tools/llama-imatrix")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    out = args.outdir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    llama_cpp = args.sdist / "vendor/llama.cpp"
    if not (llama_cpp / "convert_hf_to_gguf.py").is_file():
        raise SystemExit(f"no converter under {llama_cpp} (run gguf_venv.sh first)")
    py = sys.executable
    made = []

    hf = out / "tiny-llama-hf"
    if not (hf / "model.safetensors").is_file():
        timed("tiny Llama (tokenizer + transformers)", lambda: make_tiny_llama(hf))
        made.append(hf)
    for t in ("f32", "f16", "bf16"):
        dst = out / f"tiny-llama-{t}.gguf"
        if not dst.is_file():
            timed(f"convert tiny Llama {t}", lambda: convert(llama_cpp, py, hf, dst, t))
            made.append(dst)

    if not (args.minilm / "model.safetensors").is_file():
        subprocess.run(["bash", str(REPO / "sample-models/fetch-minilm.sh")], check=True,
                       stdout=sys.stderr)
    for t in ("f32", "f16"):
        dst = out / f"minilm-{t}.gguf"
        if not dst.is_file():
            timed(f"convert MiniLM {t}", lambda: convert(llama_cpp, py, args.minilm, dst, t))
            made.append(dst)

    text = out / "imatrix-text.txt"
    if not text.is_file() or text.read_text() != CALIBRATION:
        text.write_text(CALIBRATION)
    for fmt, name in (("gguf", "tiny-llama.imatrix.gguf"), ("dat", "tiny-llama.imatrix.dat")):
        if not (out / name).is_file():
            if not args.imatrix_tool.is_file():
                raise SystemExit(f"no {args.imatrix_tool} (run gguf_venv.sh first)")
            timed(f"llama-imatrix ({fmt})", lambda: make_imatrix(
                args.imatrix_tool, out, "tiny-llama-f16.gguf", fmt, name, args.threads))
            made.append(out / name)

    for p in made:
        print(p)


if __name__ == "__main__":
    main()
