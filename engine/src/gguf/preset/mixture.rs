//! The preset's mixture: llama.cpp's `llama_tensor_get_type_impl`, one function
//! per kind of tensor. It runs for a tensor no override decided, in llama.cpp's
//! tensor order, and keeps its counters (`i_attention_wv`, `i_ffn_down`, …) as
//! llama.cpp does: a counter moves only when its rule is reached, so a tensor an
//! override (`--tensor-type`) decided does not count.
//!
//! llama.cpp's branch for `ATTENTION_QKV` after the `attn_v` one is never
//! reached (a fused QKV is `attn_v`-like and takes that branch), so it is not
//! ported; falcon's `attn_qkv` follows the `attn_v` rules, as in llama.cpp.

use super::ggml;
use super::model::ModelInfo;
use super::table::Preset;
use super::tensor::Category;
use crate::gguf::GgmlType;
use crate::gguf::GgufTensor;

/// A type and why it was chosen.
pub(super) type Pick = (GgmlType, String);

/// The rules' state over one model.
pub(super) struct Mixture<'a> {
    info: &'a ModelInfo,
    preset: Preset,
    output_tensor_type: Option<GgmlType>,
    imatrix: bool,
    /// No `output.weight`: the token embeddings double as the output.
    tied: bool,
    n_attention_wv: i64,
    i_attention_wv: i64,
    i_ffn_down: i64,
    i_ffn_gate: i64,
    i_ffn_up: i64,
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers, and
/// every third one between.
fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

fn base(ty: GgmlType, preset: Preset) -> Pick {
    (ty, format!("{preset}: base type {}", ty.name))
}

impl<'a> Mixture<'a> {
    pub(super) fn new(
        info: &'a ModelInfo,
        tensors: &[GgufTensor],
        preset: Preset,
        output_tensor_type: Option<GgmlType>,
        imatrix: bool,
    ) -> Self {
        let n_attention_wv = tensors.iter().filter(|t| Category::of(&t.name).is_attn_v()).count() as i64;
        let tied = !tensors.iter().any(|t| Category::of(&t.name) == Category::Output);
        Self {
            info,
            preset,
            output_tensor_type,
            imatrix,
            tied,
            n_attention_wv,
            i_attention_wv: 0,
            i_ffn_down: 0,
            i_ffn_gate: 0,
            i_ffn_up: 0,
        }
    }

    fn n_layer(&self) -> i64 {
        self.info.n_layer.into()
    }

    /// The preset's type for a tensor whose base type is `base` (quantized).
    pub(super) fn pick(
        &mut self,
        t: &GgufTensor,
        cat: Category,
        base_type: GgmlType,
    ) -> Result<Pick, String> {
        use Preset as P;
        let name = t.name.as_str();
        let glm5_kept = ["attn_q_a", "attn_q_b", "nextn.eh_proj"].iter().any(|p| name.contains(p));
        if self.info.arch == "glm5-next" && glm5_kept {
            return Ok((ggml::Q8_0, "glm5-next keeps it at Q8_0 or more".into()));
        }
        if cat == Category::Output || (self.tied && cat == Category::TokenEmbd) {
            return Ok(self.output(t, cat, base_type));
        }
        if self.preset == P::Mxfp4Moe {
            return Ok(self.mxfp4_moe(t, cat));
        }
        Ok(match cat {
            Category::TokenEmbd => self.token_embd(base_type),
            _ if matches!(self.preset, P::Iq2Xxs | P::Iq2Xs | P::Iq1S | P::Iq2S | P::Iq2M | P::Iq1M) => {
                self.very_low_bit(cat, base_type)
            }
            c if c.is_attn_v() => self.attn_v(cat, base_type),
            Category::AttnK => self.attn_k(base_type),
            Category::AttnQ => self.attn_q(base_type),
            Category::FfnDown => self.ffn_down(name, base_type)?,
            Category::AttnOutput => self.attn_output(base_type),
            Category::FfnGate | Category::FfnUp => self.ffn_gate_up(name, cat, base_type)?,
            _ => base(base_type, self.preset),
        })
    }

    /// `output.weight`, and the token embeddings when they are the output too.
    fn output(&self, t: &GgufTensor, cat: Category, base_type: GgmlType) -> Pick {
        use Preset as P;
        let whose = if cat == Category::Output { "output" } else { "token_embd (tied to the output)" };
        if let Some(ty) = self.output_tensor_type {
            return (ty, format!("{whose}: --output-tensor-type"));
        }
        let nx = t.ne.first().copied().unwrap_or(0);
        let (ty, why) = if self.preset == P::Mxfp4Moe {
            (ggml::Q8_0, "Q8_0 under MXFP4_MOE".to_string())
        } else if self.info.arch == "falcon" {
            (ggml::Q8_0, "Q8_0 for falcon".to_string())
        } else if !nx.is_multiple_of(base_type.block) {
            (ggml::Q8_0, format!("Q8_0, row {nx} not a multiple of {}", base_type.block))
        } else if matches!(
            self.preset,
            P::Iq2Xxs | P::Iq2Xs | P::Iq3Xxs | P::Iq1S | P::Iq2S | P::Iq2M | P::Iq1M
        ) {
            (ggml::Q5_K, format!("Q5_K under {}", self.preset))
        } else if base_type != ggml::Q8_0 {
            (ggml::Q6_K, "Q6_K".to_string())
        } else {
            (base_type, "Q8_0 kept".to_string())
        };
        (ty, format!("{whose}: {why}"))
    }

    /// MXFP4_MOE: MXFP4 for expert tensors, Q8_0 for the rest.
    fn mxfp4_moe(&self, t: &GgufTensor, cat: Category) -> Pick {
        let experts = t.ne.get(2).copied().unwrap_or(1) > 1;
        let ffn = matches!(cat, Category::FfnUp | Category::FfnGate | Category::FfnDown);
        if experts && (self.info.arch != "bailingmoe3" || ffn) {
            (ggml::MXFP4, "MXFP4_MOE: expert tensor".into())
        } else {
            (ggml::Q8_0, "MXFP4_MOE: Q8_0 outside the experts".into())
        }
    }

    fn token_embd(&self, base_type: GgmlType) -> Pick {
        use Preset as P;
        let ty = match self.preset {
            P::Iq2Xxs | P::Iq2Xs | P::Iq1S | P::Iq1M => ggml::Q2_K,
            P::Iq2S | P::Iq2M | P::Iq3Xxs => ggml::IQ3_S,
            P::Tq1_0 | P::Tq2_0 => ggml::Q4_K,
            _ => return base(base_type, self.preset),
        };
        (ty, format!("token_embd: {} under {}", ty.name, self.preset))
    }

    /// IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ2_M: a few tensors get more bits.
    fn very_low_bit(&mut self, cat: Category, base_type: GgmlType) -> Pick {
        use Preset as P;
        let iq3_or_q2 = if matches!(self.preset, P::Iq2S | P::Iq2M) { ggml::IQ3_S } else { ggml::Q2_K };
        let n_expert = self.info.n_expert;
        let label = cat.label();
        if cat.is_attn_v() {
            self.i_attention_wv += 1;
            if self.info.n_gqa() >= 4 || n_expert >= 4 {
                return (ggml::Q4_K, format!("{label}: Q4_K (GQA ≥ 4 or ≥ 4 experts)"));
            }
            return (iq3_or_q2, format!("{label}: {} under {}", iq3_or_q2.name, self.preset));
        }
        match cat {
            Category::AttnK if n_expert == 8 => (ggml::Q4_K, "attn_k: Q4_K with 8 experts".into()),
            Category::FfnDown => {
                let i = self.i_ffn_down;
                self.i_ffn_down += 1;
                if i < self.n_layer() / 8 {
                    (iq3_or_q2, format!("ffn_down: {} in the first eighth (layer {i})", iq3_or_q2.name))
                } else {
                    base(base_type, self.preset)
                }
            }
            Category::AttnOutput if n_expert == 8 => (ggml::Q5_K, "attn_output: Q5_K with 8 experts".into()),
            Category::AttnOutput if matches!(self.preset, P::Iq1S | P::Iq1M) => {
                (ggml::IQ2_XXS, format!("attn_output: IQ2_XXS under {}", self.preset))
            }
            Category::AttnOutput if matches!(self.preset, P::Iq2S | P::Iq2M) => {
                (ggml::IQ3_S, format!("attn_output: IQ3_S under {}", self.preset))
            }
            _ => base(base_type, self.preset),
        }
    }

    /// attn_v (and fused QKV, MLA's kv_b): the most bits for the fewest bytes.
    fn attn_v(&mut self, cat: Category, base_type: GgmlType) -> Pick {
        use Preset as P;
        let (i, n) = (self.i_attention_wv, self.n_attention_wv);
        self.i_attention_wv += 1;
        let gqa4 = self.info.n_gqa() >= 4;
        let (mut ty, mut why) = match self.preset {
            P::Q2K | P::Q2KS | P::Iq3Xxs | P::Iq3Xs | P::Iq3S if gqa4 => (ggml::Q4_K, "GQA ≥ 4".to_string()),
            P::Q2K => (ggml::Q3_K, format!("under {}", self.preset)),
            P::Iq3Xxs if !self.imatrix => (ggml::IQ3_S, "no imatrix".to_string()),
            P::Iq3Xxs => (ggml::IQ3_XXS, "with an imatrix".to_string()),
            P::Q3KM if i < 2 => (ggml::Q5_K, format!("one of the first two ({i})")),
            P::Iq3M | P::Q3KM => (ggml::Q4_K, format!("under {}", self.preset)),
            P::Q3KL => (ggml::Q5_K, format!("under {}", self.preset)),
            P::Iq4Nl | P::Iq4Xs if gqa4 => (ggml::Q5_K, "GQA ≥ 4".to_string()),
            P::Q4KM | P::Q5KM if use_more_bits(i, n) => (ggml::Q6_K, format!("use_more_bits, {i} of {n}")),
            P::Q4KS if i < 4 => (ggml::Q5_K, format!("one of the first four ({i})")),
            _ => (base_type, String::new()),
        };
        if self.info.is_70b && (ty == ggml::Q3_K || ty == ggml::Q4_K) {
            (ty, why) = (ggml::Q5_K, "a 70B model's shared attn_v".into());
        }
        if self.info.n_expert == 8 {
            (ty, why) = (ggml::Q8_0, "8 experts".into());
        }
        if why.is_empty() {
            base(ty, self.preset)
        } else {
            (ty, format!("{}: {} ({why})", cat.label(), ty.name))
        }
    }

    fn attn_k(&self, base_type: GgmlType) -> Pick {
        match self.preset {
            _ if self.info.n_expert == 8 => (ggml::Q8_0, "attn_k: Q8_0 with 8 experts".into()),
            Preset::Iq3Xs => (ggml::IQ3_XXS, "attn_k: IQ3_XXS under IQ3_XS".into()),
            Preset::Iq3Xxs => (ggml::IQ2_S, "attn_k: IQ2_S under IQ3_XXS".into()),
            _ => base(base_type, self.preset),
        }
    }

    fn attn_q(&self, base_type: GgmlType) -> Pick {
        match self.preset {
            Preset::Iq3Xs => (ggml::IQ3_XXS, "attn_q: IQ3_XXS under IQ3_XS".into()),
            Preset::Iq3Xxs => (ggml::IQ2_S, "attn_q: IQ2_S under IQ3_XXS".into()),
            _ => base(base_type, self.preset),
        }
    }

    /// The layer of an FFN tensor: llama.cpp's counter for a dense model, the
    /// block number in the name with experts (their tensors are not in layer order).
    fn layer(&self, counter: i64, name: &str) -> Result<(i64, i64), String> {
        let n = self.n_layer();
        if self.info.n_expert <= 1 {
            return Ok((counter, n));
        }
        let i = super::tensor::block_of(name).ok_or_else(|| "cannot determine its layer".to_string())?;
        if !(0..n).contains(&i) {
            return Err(format!("bad layer {i}: must be in [0, {n})"));
        }
        Ok((i, n))
    }

    fn ffn_down(&mut self, name: &str, base_type: GgmlType) -> Result<Pick, String> {
        use Preset as P;
        let (i, n) = self.layer(self.i_ffn_down, name)?;
        self.i_ffn_down += 1;
        let falcon = self.info.arch == "falcon";
        let at = format!("layer {i} of {n}");
        let (ty, why) = match self.preset {
            P::Q2K => (ggml::Q3_K, format!("under {}", self.preset)),
            P::Q2KS if i < n / 8 => (ggml::Q4_K, format!("first eighth, {at}")),
            P::Iq3Xxs if !self.imatrix && i < n / 8 => {
                (ggml::Q4_K, format!("no imatrix, first eighth, {at}"))
            }
            P::Iq3Xxs if !self.imatrix => (ggml::Q3_K, "no imatrix".to_string()),
            P::Q3KM if i < n / 16 => (ggml::Q5_K, format!("first sixteenth, {at}")),
            P::Q3KM if !falcon || use_more_bits(i, n) => (ggml::Q4_K, format!("under Q3_K_M, {at}")),
            P::Q3KM => (ggml::Q3_K, format!("falcon, not a use_more_bits layer, {at}")),
            P::Iq3M if i < n / 8 || (self.info.n_expert == 8 && use_more_bits(i, n)) => {
                (ggml::Q4_K, format!("under IQ3_M, early or use_more_bits layer, {at}"))
            }
            P::Q3KL if falcon => (ggml::Q4_K, "falcon under Q3_K_L".to_string()),
            P::Q3KL => (ggml::Q5_K, format!("under {}", self.preset)),
            P::Q4KM if falcon && i < n / 16 => (ggml::Q6_K, format!("falcon, first sixteenth, {at}")),
            P::Q4KM if use_more_bits(i, n) => {
                (if falcon { ggml::Q5_K } else { ggml::Q6_K }, format!("use_more_bits, {at}"))
            }
            P::Iq4Nl | P::Iq4Xs if i < n / 8 && !self.imatrix => {
                (ggml::Q5_K, format!("no imatrix, first eighth, {at}"))
            }
            P::Q5KM if use_more_bits(i, n) => (ggml::Q6_K, format!("use_more_bits, {at}")),
            P::Q4KS if !falcon && i < n / 8 => (ggml::Q5_K, format!("first eighth, {at}")),
            P::Q4_0 | P::Q5_0 if self.imatrix && i < n / 8 => {
                let ty = if self.preset == P::Q4_0 { ggml::Q4_1 } else { ggml::Q5_1 };
                (ty, format!("imatrix guard, first eighth, {at}"))
            }
            _ => (base_type, String::new()),
        };
        Ok(if why.is_empty() {
            base(ty, self.preset)
        } else {
            (ty, format!("ffn_down: {} ({why})", ty.name))
        })
    }

    fn attn_output(&self, base_type: GgmlType) -> Pick {
        use Preset as P;
        let ty = if self.info.arch == "falcon" {
            if self.preset == P::Q3KL { ggml::Q4_K } else { base_type }
        } else if self.info.n_expert == 8 {
            let promoted = matches!(
                self.preset,
                P::Q2K
                    | P::Iq3Xs
                    | P::Iq3Xxs
                    | P::Q3KS
                    | P::Q3KM
                    | P::Iq4Nl
                    | P::Q4KS
                    | P::Q4KM
                    | P::Iq3S
                    | P::Iq3M
                    | P::Iq4Xs
            );
            if promoted { ggml::Q5_K } else { base_type }
        } else {
            match self.preset {
                P::Q2K => ggml::Q3_K,
                P::Iq3Xxs => ggml::IQ3_S,
                P::Q3KM | P::Iq3M => ggml::Q4_K,
                P::Q3KL => ggml::Q5_K,
                _ => base_type,
            }
        };
        if ty == base_type {
            base(ty, self.preset)
        } else {
            (ty, format!("attn_output: {} under {}", ty.name, self.preset))
        }
    }

    fn ffn_gate_up(&mut self, name: &str, cat: Category, base_type: GgmlType) -> Result<Pick, String> {
        let counter = if cat == Category::FfnGate { &mut self.i_ffn_gate } else { &mut self.i_ffn_up };
        let at = *counter;
        *counter += 1;
        let (i, n) = self.layer(at, name)?;
        if self.preset == Preset::Iq3Xs && i >= n / 8 && i < 7 * n / 8 {
            let why = format!("{}: IQ3_XXS in the middle layers (layer {i} of {n})", cat.label());
            return Ok((ggml::IQ3_XXS, why));
        }
        Ok(base(base_type, self.preset))
    }
}

#[cfg(test)]
mod tests {
    use super::use_more_bits;

    #[test]
    fn more_bits_for_the_ends_and_every_third_layer() {
        let picked: Vec<i64> = (0..16).filter(|&i| use_more_bits(i, 16)).collect();
        assert_eq!(picked, [0, 1, 4, 7, 10, 13, 14, 15]);
    }
}
