//! What llama-quantize reads from a tensor's name and shape, before any preset
//! rule: the broad kind (`tensor_get_category`), whether it may be quantized at
//! all (`tensor_allows_quantization`), the type a row length forces
//! (`tensor_type_fallback`), which types need an importance matrix
//! (`tensor_requires_imatrix`), and the order llama.cpp walks the tensors in
//! (its loader's `weight_name_comparer`), which the rules' counters depend on.

use std::cmp::Ordering;

use super::ggml;
use super::table::Preset;
use crate::gguf::GgmlType;
use crate::gguf::GgufTensor;

/// A tensor's kind for the rules (broad, not per architecture).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

impl Category {
    pub(super) fn of(name: &str) -> Self {
        const BY_PART: [(&str, Category); 9] = [
            ("attn_qkv.weight", Category::AttnQkv),
            ("attn_kv_b.weight", Category::AttnKvB),
            ("attn_v.weight", Category::AttnV),
            ("attn_k.weight", Category::AttnK),
            ("attn_q.weight", Category::AttnQ),
            ("attn_output.weight", Category::AttnOutput),
            ("ffn_up", Category::FfnUp),
            ("ffn_gate", Category::FfnGate),
            ("ffn_down", Category::FfnDown),
        ];
        if is_output(name) {
            Self::Output
        } else if is_token_embd(name) {
            Self::TokenEmbd
        } else {
            BY_PART.iter().find(|(part, _)| name.contains(part)).map_or(Self::Other, |p| p.1)
        }
    }

    /// attn_v and the tensors that hold it (fused QKV, MLA's kv_b): the most
    /// sensitive to quantization, counted as `n_attention_wv`.
    pub(super) fn is_attn_v(self) -> bool {
        matches!(self, Self::AttnV | Self::AttnQkv | Self::AttnKvB)
    }

    /// The short name used in reasons.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::TokenEmbd => "token_embd",
            Self::AttnQ => "attn_q",
            Self::AttnV => "attn_v",
            Self::AttnK => "attn_k",
            Self::AttnQkv => "attn_qkv",
            Self::AttnKvB => "attn_kv_b",
            Self::AttnOutput => "attn_output",
            Self::FfnUp => "ffn_up",
            Self::FfnGate => "ffn_gate",
            Self::FfnDown => "ffn_down",
            Self::Output => "output",
            Self::Other => "tensor",
        }
    }
}

pub(super) fn is_output(name: &str) -> bool {
    name == "output.weight"
}

pub(super) fn is_token_embd(name: &str) -> bool {
    name == "token_embd.weight" || name == "per_layer_token_embd.weight"
}

/// Name parts llama-quantize never quantizes, with why.
const KEPT_PARTS: [(&str, &str); 35] = [
    ("_norm.weight", "a norm"),
    ("ffn_gate_inp.weight", "the expert router"),
    ("ffn_gate_tid2eid.weight", "the token-to-expert table"),
    ("altup", "small (altup)"),
    ("laurel", "small (laurel)"),
    ("per_layer_model_proj", "small (per_layer_model_proj)"),
    ("ssm_conv1d", "a small conv1d"),
    ("shortconv.conv.weight", "a small conv1d"),
    ("indexer.k_proj.weight", "a small indexer projection"),
    ("indexer.q_proj.weight", "a small indexer projection"),
    ("time_mix_first.weight", "a small RWKV weight"),
    ("time_mix_w0.weight", "a small RWKV weight"),
    ("time_mix_w1.weight", "a small RWKV weight"),
    ("time_mix_w2.weight", "a small RWKV weight"),
    ("time_mix_v0.weight", "a small RWKV weight"),
    ("time_mix_v1.weight", "a small RWKV weight"),
    ("time_mix_v2.weight", "a small RWKV weight"),
    ("time_mix_a0.weight", "a small RWKV weight"),
    ("time_mix_a1.weight", "a small RWKV weight"),
    ("time_mix_a2.weight", "a small RWKV weight"),
    ("time_mix_g1.weight", "a small RWKV weight"),
    ("time_mix_g2.weight", "a small RWKV weight"),
    ("time_mix_decay_w1.weight", "a small RWKV weight"),
    ("time_mix_decay_w2.weight", "a small RWKV weight"),
    ("time_mix_lerp_fused.weight", "a small RWKV weight"),
    ("attn_rel_b.weight", "a relative position bias"),
    (".position_embd", "a multimodal position embedding"),
    ("sam.pos_embd", "a multimodal tensor"),
    ("sam.neck.", "a multimodal tensor"),
    ("sam.net_", "a multimodal tensor"),
    (".rel_pos", "a multimodal tensor"),
    (".patch_embd", "a multimodal tensor"),
    (".patch_merger", "a multimodal tensor"),
    ("a.rvq.codebook", "an audio codebook"),
    ("mm.a.code_embd", "an audio codebook"),
];

/// GLM5-next's tensors kept as they are (checked only for that architecture).
const KEPT_GLM5_NEXT: [&str; 14] = [
    "hc_",
    "indexer.attn_q_b",
    "indexer.attn_k",
    "indexer.proj",
    "indexer_compressor_gate",
    "indexer_compressor_ape",
    "ssm_f_a.weight",
    "ssm_f_b.weight",
    "ssm_g_a.weight",
    "ssm_g_b.weight",
    "ssm_beta.weight",
    "attn_kv_a_mqa.weight",
    "attn_k_b.weight",
    "attn_v_b.weight",
];

/// Why llama-quantize copies this tensor unchanged, or `None` when it may be
/// quantized. `leave_output` is `--leave-output-tensor`; `copy` the COPY preset.
pub(super) fn kept_because(
    t: &GgufTensor,
    arch: &str,
    leave_output: bool,
    copy: bool,
) -> Option<&'static str> {
    let name = t.name.as_str();
    if copy {
        return Some("COPY keeps every tensor");
    }
    // ggml_n_dims: trailing dimensions of 1 do not count
    if t.ne.iter().skip(1).all(|&n| n == 1) {
        return Some("1-D tensor");
    }
    if !name.ends_with("weight") {
        return Some("name does not end in 'weight'");
    }
    if leave_output && is_output(name) {
        return Some("--leave-output-tensor");
    }
    if name == "position_embd.weight" || name == "token_types.weight" {
        return Some("a position or token-type embedding");
    }
    if let Some((_, why)) = KEPT_PARTS.iter().find(|(part, _)| name.contains(part)) {
        return Some(why);
    }
    if arch == "glm5-next" && KEPT_GLM5_NEXT.iter().any(|part| name.contains(part)) {
        return Some("a small GLM5-next tensor");
    }
    None
}

/// The 256-blocks whose fallback is IQ4_NL, and those whose is Q4_0.
const TO_IQ4_NL: [GgmlType; 8] = [
    ggml::IQ1_S,
    ggml::IQ1_M,
    ggml::IQ2_XXS,
    ggml::IQ2_XS,
    ggml::IQ2_S,
    ggml::IQ3_XXS,
    ggml::IQ3_S,
    ggml::IQ4_XS,
];
const TO_Q4_0: [GgmlType; 4] = [ggml::Q2_K, ggml::Q3_K, ggml::TQ1_0, ggml::TQ2_0];

/// `tensor_type_fallback`: the type a row of `ncols` can hold when `target`'s
/// blocks do not divide it, with the reason; `Err` when ggml defines none.
pub(super) fn fallback(ncols: u64, target: GgmlType) -> Result<Option<(GgmlType, String)>, String> {
    if ncols.is_multiple_of(target.block) {
        return Ok(None);
    }
    let smaller = if TO_IQ4_NL.contains(&target) {
        ggml::IQ4_NL
    } else if TO_Q4_0.contains(&target) {
        ggml::Q4_0
    } else if target == ggml::Q4_K {
        ggml::Q5_0
    } else if target == ggml::Q5_K {
        ggml::Q5_1
    } else if target == ggml::Q6_K {
        ggml::Q8_0
    } else if target.block <= 32 {
        // already a block of 32 or less: no smaller block, so F16 below
        target
    } else {
        return Err(format!("no tensor type fallback is defined for type {}", target.name));
    };
    let to = if ncols.is_multiple_of(smaller.block) { smaller } else { ggml::F16 };
    let why =
        format!("fallback: row {ncols} not a multiple of {} ({}) → {}", target.block, target.name, to.name);
    Ok(Some((to, why)))
}

/// `tensor_requires_imatrix`: llama-quantize refuses to write these types
/// without an importance matrix (the embeddings and output excepted).
pub(super) fn requires_imatrix(name: &str, to: GgmlType, preset: Preset) -> bool {
    if is_token_embd(name) || is_output(name) {
        return false;
    }
    [ggml::IQ3_XXS, ggml::IQ2_XXS, ggml::IQ2_XS, ggml::IQ2_S, ggml::IQ1_M, ggml::IQ1_S].contains(&to)
        || (to == ggml::Q2_K && preset == Preset::Q2KS)
}

/// The block number as C's `sscanf(name, "blk.%d.", &i)` reads it: the integer
/// right after `blk.` (leading spaces and a sign allowed), whatever follows.
pub(super) fn block_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?.trim_start();
    let digits_at = usize::from(rest.starts_with(['+', '-']));
    let len = rest[digits_at..].bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits_at + len].parse().ok()
}

/// llama.cpp's loader order: by block number (tensors outside blocks first),
/// then by name.
pub(super) fn llama_order(a: &str, b: &str) -> Ordering {
    let layer = |n: &str| block_of(n).unwrap_or(-1);
    layer(a).cmp(&layer(b)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_read_as_sscanf_does() {
        assert_eq!(block_of("blk.12.attn_v.weight"), Some(12));
        assert_eq!(block_of("blk.3x"), Some(3));
        assert_eq!(block_of("enc.blk.0.attn_v.weight"), None);
        assert_eq!(block_of("blk.x.attn_v.weight"), None);
        assert_eq!(llama_order("blk.10.a", "blk.9.b"), Ordering::Greater);
        assert_eq!(llama_order("output.weight", "blk.0.a"), Ordering::Less);
    }

    #[test]
    fn fallbacks_follow_ggml() {
        let f = |n, t| fallback(n, t).ok().flatten().map(|(t, _)| t.name);
        assert_eq!(f(384, ggml::Q4_K), Some("Q5_0"));
        assert_eq!(f(384, ggml::IQ2_XS), Some("IQ4_NL"));
        assert_eq!(f(100, ggml::Q6_K), Some("F16"));
        assert_eq!(f(100, ggml::Q4_0), Some("F16"));
        assert_eq!(f(256, ggml::Q4_K), None);
        assert!(fallback(320, ggml::Q1_0).is_err(), "a block of 128 has no smaller sibling");
    }
}
