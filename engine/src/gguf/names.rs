//! GGUF tensor names against Hugging Face names (`blk.3.attn_q.weight` ↔
//! `model.layers.3.self_attn.q_proj.weight`), for the families whose files are
//! paired with their originals: Llama (and Mistral, which converts to
//! `llama`), Qwen2/3, Gemma 1–3 and BERT. The tables restate gguf-py 0.19.0's
//! `tensor_mapping.py` for these families (as vendored in llama-cpp-python
//! 0.3.36); the converter also drops a leading `bert.`, which [`to_gguf`]
//! does too. And which tensors the converter stored with their rows permuted
//! for rope ([`rope_heads`]), so a comparison undoes it.

use super::Header;

/// Per-block names: (Hugging Face suffix after the block prefix, GGUF part).
type Pairs = &'static [(&'static str, &'static str)];

/// A decoder block's attention and MLP (every decoder family here).
const DECODER_BLOCK: Pairs = &[
    ("self_attn.q_proj", "attn_q"),
    ("self_attn.k_proj", "attn_k"),
    ("self_attn.v_proj", "attn_v"),
    ("self_attn.o_proj", "attn_output"),
    ("self_attn.q_norm", "attn_q_norm"),
    ("self_attn.k_norm", "attn_k_norm"),
    ("mlp.gate_proj", "ffn_gate"),
    ("mlp.up_proj", "ffn_up"),
    ("mlp.down_proj", "ffn_down"),
    ("input_layernorm", "attn_norm"),
];

/// Llama, Qwen2/3, Gemma: one norm before the MLP.
const PRE_NORM: Pairs = &[("post_attention_layernorm", "ffn_norm")];

/// Gemma 2 and 3 norm around both halves of the block.
const SANDWICH_NORMS: Pairs = &[
    ("post_attention_layernorm", "post_attention_norm"),
    ("pre_feedforward_layernorm", "ffn_norm"),
    ("post_feedforward_layernorm", "post_ffw_norm"),
];

const DECODER_TOP: Pairs =
    &[("model.embed_tokens", "token_embd"), ("model.norm", "output_norm"), ("lm_head", "output")];

const BERT_BLOCK: Pairs = &[
    ("attention.self.query", "attn_q"),
    ("attention.self.key", "attn_k"),
    ("attention.self.value", "attn_v"),
    ("attention.output.dense", "attn_output"),
    ("attention.output.LayerNorm", "attn_output_norm"),
    ("intermediate.dense", "ffn_up"),
    ("output.dense", "ffn_down"),
    ("output.LayerNorm", "layer_output_norm"),
];

const BERT_TOP: Pairs = &[
    ("embeddings.word_embeddings", "token_embd"),
    ("embeddings.position_embeddings", "position_embd"),
    ("embeddings.token_type_embeddings", "token_types"),
    ("embeddings.LayerNorm", "token_embd_norm"),
];

/// A family's naming: block prefix on the Hugging Face side and its tables
/// (a block's names come from two).
struct Family {
    hf_block: &'static str,
    block: [Pairs; 2],
    top: Pairs,
}

impl Family {
    fn block_pairs(&self) -> impl Iterator<Item = &(&'static str, &'static str)> {
        self.block.iter().flat_map(|p| p.iter())
    }
}

fn family(arch: &str) -> Option<Family> {
    let decoder =
        |norms| Family { hf_block: "model.layers.", block: [DECODER_BLOCK, norms], top: DECODER_TOP };
    match arch {
        "llama" | "mistral" | "qwen2" | "qwen3" | "gemma" => Some(decoder(PRE_NORM)),
        "gemma2" | "gemma3" => Some(decoder(SANDWICH_NORMS)),
        "bert" => Some(Family { hf_block: "encoder.layer.", block: [BERT_BLOCK, &[]], top: BERT_TOP }),
        _ => None,
    }
}

/// The families this module names.
pub const ARCHS: [&str; 8] = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "bert"];

/// Splits `name` into its module and its last part (`weight`, `bias`).
fn split_param(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('.')
}

/// The Hugging Face name of GGUF tensor `gguf` in a file of architecture `arch`.
pub fn to_hf(arch: &str, gguf: &str) -> Option<String> {
    let f = family(arch)?;
    let (module, param) = split_param(gguf)?;
    if let Some(rest) = module.strip_prefix("blk.") {
        let (n, part) = rest.split_once('.')?;
        n.parse::<usize>().ok()?;
        let hf = f.block_pairs().find(|(_, g)| *g == part)?.0;
        return Some(format!("{}{n}.{hf}.{param}", f.hf_block));
    }
    let hf = f.top.iter().find(|(_, g)| *g == module)?.0;
    Some(format!("{hf}.{param}"))
}

/// The GGUF name the converter gives Hugging Face tensor `hf` (a leading
/// `bert.` dropped, as the converter does).
pub fn to_gguf(arch: &str, hf: &str) -> Option<String> {
    let f = family(arch)?;
    let hf = if arch == "bert" { hf.strip_prefix("bert.").unwrap_or(hf) } else { hf };
    let (module, param) = split_param(hf)?;
    if let Some(rest) = module.strip_prefix(f.hf_block) {
        let (n, part) = rest.split_once('.')?;
        n.parse::<usize>().ok()?;
        let g = f.block_pairs().find(|(h, _)| *h == part)?.1;
        return Some(format!("blk.{n}.{g}.{param}"));
    }
    let g = f.top.iter().find(|(h, _)| *h == module)?.1;
    Some(format!("{g}.{param}"))
}

/// For a tensor the converter stored with its rows permuted for rope (a
/// Llama-family `attn_q` or `attn_k` weight), the head count it permuted with:
/// `attention.head_count` for Q, `attention.head_count_kv` for K (GQA).
pub fn rope_heads(header: &Header, gguf: &str) -> Option<usize> {
    if header.arch() != Some("llama") {
        return None;
    }
    let heads = header.arch_u64("attention.head_count")?;
    let key = if gguf.ends_with(".attn_q.weight") {
        "attention.head_count"
    } else if gguf.ends_with(".attn_k.weight") {
        "attention.head_count_kv"
    } else {
        return None;
    };
    let n = header.arch_u64(key).unwrap_or(heads);
    usize::try_from(n).ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_both_ways() {
        let cases = [
            ("llama", "blk.3.attn_q.weight", "model.layers.3.self_attn.q_proj.weight"),
            ("qwen2", "blk.0.attn_k.bias", "model.layers.0.self_attn.k_proj.bias"),
            ("qwen3", "blk.1.attn_q_norm.weight", "model.layers.1.self_attn.q_norm.weight"),
            ("llama", "token_embd.weight", "model.embed_tokens.weight"),
            ("llama", "output.weight", "lm_head.weight"),
            ("gemma2", "blk.2.post_ffw_norm.weight", "model.layers.2.post_feedforward_layernorm.weight"),
            ("gemma", "blk.2.ffn_norm.weight", "model.layers.2.post_attention_layernorm.weight"),
            ("bert", "blk.5.ffn_down.weight", "encoder.layer.5.output.dense.weight"),
            ("bert", "token_types.weight", "embeddings.token_type_embeddings.weight"),
        ];
        for (arch, g, hf) in cases {
            assert_eq!(to_hf(arch, g).as_deref(), Some(hf), "{arch} {g}");
            assert_eq!(to_gguf(arch, hf).as_deref(), Some(g), "{arch} {hf}");
        }
        assert_eq!(
            to_gguf("bert", "bert.encoder.layer.0.attention.self.query.weight").unwrap(),
            "blk.0.attn_q.weight"
        );
        assert_eq!(to_hf("llama", "blk.x.attn_q.weight"), None);
        assert_eq!(to_hf("rwkv", "blk.0.attn_q.weight"), None);
    }
}
