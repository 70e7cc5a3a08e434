//! The Llama / Qwen2 / Mistral decoder as transformers computes it: RMSNorm,
//! rotary self-attention with grouped key/value heads and a causal mask, SwiGLU
//! MLP, final norm and `lm_head` (tied to the embeddings when the checkpoint has
//! none). Qwen2's q/k/v biases are read when stored. Samples are packed
//! ([`Pack`]): attention stays within each sample and rotary positions restart at
//! each, so a pack computes what each sample alone would.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::Hook;
use super::attention::{Shape, attend};
use super::awq::{Mapping, Part};
use super::pack::Pack;
use super::rows;
use super::weights::{Linear, Loader, show};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};

#[derive(Clone, Debug, Deserialize)]
struct Config {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    #[serde(default = "eps")]
    rms_norm_eps: f64,
    #[serde(default = "theta")]
    rope_theta: f64,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    /// transformers 5 writes θ and the scaling here instead (`rope_theta`, `rope_type`, …).
    #[serde(default)]
    rope_parameters: Option<serde_json::Value>,
    #[serde(default)]
    sliding_window: Option<usize>,
    /// Qwen2 writes a `sliding_window` it does not use unless this is true.
    #[serde(default)]
    use_sliding_window: Option<bool>,
    #[serde(default = "silu")]
    hidden_act: String,
}

impl Config {
    /// How far back a token may attend (`usize::MAX`: no sliding window).
    fn window(&self) -> usize {
        match self.use_sliding_window {
            Some(false) => usize::MAX,
            _ => self.sliding_window.unwrap_or(usize::MAX),
        }
    }
}

fn eps() -> f64 {
    1e-6
}
fn theta() -> f64 {
    10_000.0
}
fn silu() -> String {
    "silu".into()
}

struct Layer {
    /// The norms' weight names: a hook may replace them (AWQ folds scales in).
    in_norm_name: String,
    post_norm_name: String,
    in_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    post_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// A loaded decoder.
pub struct Decoder {
    cfg: Config,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Rotary frequencies 1/θ^(2i/d), after any Llama-3 scaling.
    inv_freq: Vec<f32>,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
}

impl Decoder {
    pub(crate) fn load(ckpt: &Checkpoint, config_path: &Path, text: &str) -> Result<Self> {
        let cfg: Config =
            serde_json::from_str(text).map_err(|e| Error::format(config_path, e.to_string()))?;
        let bad = |why: String| Error::format(config_path, why);
        if cfg.hidden_act != "silu" {
            return Err(bad(format!("hidden_act '{}' is not supported (silu only)", cfg.hidden_act)));
        }
        let heads = cfg.num_attention_heads;
        let kv_heads = cfg.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(bad("num_attention_heads is not a multiple of num_key_value_heads".into()));
        }
        let head_dim = cfg.head_dim.unwrap_or(cfg.hidden_size / heads);
        if !head_dim.is_multiple_of(2) {
            return Err(bad(format!("head_dim {head_dim} is odd: rotary embeddings need pairs")));
        }
        let inv_freq = rotary_frequencies(&cfg, head_dim).map_err(bad)?;
        let mut l = Loader { ckpt, prefix: String::new(), config: config_path };
        if !l.has("embed_tokens.weight") {
            l.prefix = "model.".into();
        }
        let embed = l.shaped("embed_tokens.weight", &[cfg.vocab_size, cfg.hidden_size])?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| load_layer(&l, &cfg, i, heads * head_dim, kv_heads * head_dim))
            .collect::<Result<_>>()?;
        let norm = l.shaped("norm.weight", &[cfg.hidden_size])?;
        let head = Loader { ckpt, prefix: String::new(), config: config_path };
        let lm_head = if head.has("lm_head.weight") {
            head.linear("lm_head", cfg.vocab_size, cfg.hidden_size)?
        } else {
            // Tied: the embedding matrix is the output projection.
            Linear { name: l.name("embed_tokens.weight")?, w: embed.clone(), b: None }
        };
        Ok(Self { cfg, heads, kv_heads, head_dim, inv_freq, embed, layers, norm, lm_head })
    }

    pub(crate) fn linears(&self) -> Vec<String> {
        let mut v: Vec<String> = self.all().map(|x| x.name.clone()).collect();
        v.dedup();
        v
    }

    fn all(&self) -> impl Iterator<Item = &Linear> {
        self.layers
            .iter()
            .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down])
            .chain(std::iter::once(&self.lm_head))
    }

    pub(crate) fn weight(&self, name: &str) -> Option<&Tensor> {
        self.all().find(|x| x.name == name).map(|x| &x.w)
    }

    /// Any tensor a block uses, by name: a Linear's weight or bias, a norm's weight.
    pub(crate) fn parameter(&self, name: &str) -> Option<&Tensor> {
        if let Some(w) = self.weight(name) {
            return Some(w);
        }
        if let Some((_, b)) = self.all().filter_map(|x| x.b.as_ref()).find(|(n, _)| n == name) {
            return Some(b);
        }
        self.layers.iter().find_map(|l| {
            (l.in_norm_name == name)
                .then_some(&l.in_norm)
                .or((l.post_norm_name == name).then_some(&l.post_norm))
        })
    }

    /// The token embeddings of a pack: the input of block 0.
    pub(crate) fn embed(&self, pack: &Pack) -> candle_core::Result<Tensor> {
        self.embed.index_select(&Tensor::new(pack.ids(), &Device::Cpu)?, 0)
    }

    pub(crate) fn blocks(&self) -> usize {
        self.layers.len()
    }

    /// The decoder layer holding a Linear layer (None for `lm_head`).
    pub(crate) fn block_of(&self, name: &str) -> Option<usize> {
        self.layers
            .iter()
            .position(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down].iter().any(|x| x.name == name))
    }

    /// Decoder layer `i` applied to the residual stream `x` `[tokens, hidden]`.
    pub(crate) fn block(
        &self,
        i: usize,
        x: &Tensor,
        pack: &Pack,
        hook: &mut dyn Hook,
    ) -> candle_core::Result<Tensor> {
        let l = &self.layers[i];
        let eps = self.cfg.rms_norm_eps as f32;
        let norm = |name: &str, w| hook.weight(name).unwrap_or(w).clone();
        let (in_norm, post_norm) = (norm(&l.in_norm_name, &l.in_norm), norm(&l.post_norm_name, &l.post_norm));
        let h = candle_nn::ops::rms_norm(x, &in_norm, eps)?;
        let x = rows::add(x, &self.self_attn(l, &h, pack, hook)?)?;
        let h = candle_nn::ops::rms_norm(&x, &post_norm, eps)?;
        rows::add(&x, &Self::mlp(l, &h, hook)?)
    }

    /// Self-attention from the normed residual `h`, `o_proj` included.
    fn self_attn(
        &self,
        l: &Layer,
        h: &Tensor,
        pack: &Pack,
        hook: &mut dyn Hook,
    ) -> candle_core::Result<Tensor> {
        // Recomputed per block (cheap next to the matmuls) so that a run can start at any block.
        let (cos, sin) = self.rotary(pack)?;
        show(hook, &[&l.q, &l.k, &l.v], h)?;
        let ctx = self.attention(l, h, pack, &cos, &sin, hook)?;
        show(hook, &[&l.o], &ctx)?;
        l.o.forward(&ctx, hook)
    }

    /// The SwiGLU MLP from the normed residual `h`.
    fn mlp(l: &Layer, h: &Tensor, hook: &mut dyn Hook) -> candle_core::Result<Tensor> {
        show(hook, &[&l.gate, &l.up], h)?;
        let m = rows::zip(&l.gate.forward(h, hook)?, &l.up.forward(h, hook)?, |g, u| {
            candle_nn::ops::silu(g)?.mul(u)
        })?;
        show(hook, &[&l.down], &m)?;
        l.down.forward(&m, hook)
    }

    /// AWQ's mappings in block `i`, in the order llm-compressor applies them
    /// (docs/numerics.md, "AWQ"): input norm → q, k, v (the loss over the
    /// whole attention); v → o when their shapes agree (not under grouped
    /// key/value heads); post-attention norm → gate, up (over the whole MLP);
    /// up → down.
    pub(crate) fn awq_mappings(&self, i: usize) -> Vec<Mapping> {
        let l = &self.layers[i];
        let module = |n: &str| n.strip_suffix(".weight").unwrap_or(n).to_string();
        let norm = |name: &String, balance: &[&Linear], parent| Mapping {
            smooth: module(name),
            weights: vec![(name.clone(), 1)],
            balance: balance.iter().map(|b| b.name.clone()).collect(),
            parent,
        };
        let linear = |smooth: &Linear, balance: &Linear| Mapping {
            smooth: module(&smooth.name),
            weights: std::iter::once((smooth.name.clone(), smooth.in_features()))
                .chain(smooth.b.as_ref().map(|(b, _)| (b.clone(), 1)))
                .collect(),
            balance: vec![balance.name.clone()],
            parent: Part::Linear(balance.name.clone()),
        };
        let mut v = vec![norm(&l.in_norm_name, &[&l.q, &l.k, &l.v], Part::Attention)];
        if l.v.out_features() == l.o.in_features() {
            v.push(linear(&l.v, &l.o));
        }
        v.push(norm(&l.post_norm_name, &[&l.gate, &l.up], Part::Mlp));
        v.push(linear(&l.up, &l.down));
        v
    }

    /// One part of block `i` on its input `x` (what the hook saw as the input
    /// of the part's first Linear): AWQ's loss is measured on its output.
    pub(crate) fn part(
        &self,
        i: usize,
        part: &Part,
        x: &Tensor,
        pack: &Pack,
        hook: &mut dyn Hook,
    ) -> candle_core::Result<Tensor> {
        let l = &self.layers[i];
        match part {
            Part::Attention => self.self_attn(l, x, pack, hook),
            Part::Mlp => Self::mlp(l, x, hook),
            Part::Linear(name) => {
                let lin =
                    [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down].into_iter().find(|x| &x.name == name);
                lin.ok_or_else(|| candle_core::Error::Msg(format!("{name} is not in block {i}")))?
                    .forward(x, hook)
            }
        }
    }

    /// After the last block: final RMSNorm and `lm_head`, the next-token logits `[tokens, vocab]`.
    pub(crate) fn head(&self, x: &Tensor, hook: &mut dyn Hook) -> candle_core::Result<Tensor> {
        let x = candle_nn::ops::rms_norm(x, &self.norm, self.cfg.rms_norm_eps as f32)?;
        show(hook, &[&self.lm_head], &x)?;
        self.lm_head.forward(&x, hook)
    }

    fn attention(
        &self,
        l: &Layer,
        h: &Tensor,
        pack: &Pack,
        cos: &Tensor,
        sin: &Tensor,
        hook: &dyn Hook,
    ) -> candle_core::Result<Tensor> {
        let t = h.dim(0)?;
        let hd = self.head_dim;
        // [tokens, heads·hd] viewed as [1, tokens, heads, hd], the layout rope_thd() takes.
        let rotate = |y: Tensor, n: usize| {
            candle_nn::rotary_emb::rope_thd(&y.reshape((1, t, n, hd))?, cos, sin)?.reshape((t, n * hd))
        };
        let q = rotate(l.q.forward(h, hook)?, self.heads)?;
        let k = rotate(l.k.forward(h, hook)?, self.kv_heads)?;
        let v = l.v.forward(h, hook)?;
        let shape = Shape {
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: hd,
            causal: true,
            window: self.cfg.window(),
        };
        attend(&q, &k, &v, pack, shape)
    }

    /// cos and sin of every token's position (within its sample) × frequency, `[tokens, hd/2]`.
    fn rotary(&self, pack: &Pack) -> candle_core::Result<(Tensor, Tensor)> {
        let inv = Tensor::new(self.inv_freq.as_slice(), &Device::Cpu)?;
        let pos = Tensor::new(pack.positions(), &Device::Cpu)?.to_dtype(DType::F32)?;
        let angles = pos.unsqueeze(1)?.broadcast_mul(&inv.unsqueeze(0)?)?;
        Ok((angles.cos()?, angles.sin()?))
    }
}

/// 1/θ^(2i/d); with `rope_scaling` of type `llama3`, transformers' frequency
/// smoothing. Other scalings change long contexts only, but are refused rather
/// than silently ignored. `rope_parameters` (transformers 5) wins over the
/// older top-level `rope_theta` / `rope_scaling`.
fn rotary_frequencies(cfg: &Config, hd: usize) -> std::result::Result<Vec<f32>, String> {
    let params = cfg.rope_parameters.as_ref().filter(|v| v.is_object());
    let theta = params
        .and_then(|p| p.get("rope_theta"))
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(cfg.rope_theta);
    let base: Vec<f64> = (0..hd / 2).map(|i| 1.0 / theta.powf(2.0 * i as f64 / hd as f64)).collect();
    let Some(scaling) = params.or(cfg.rope_scaling.as_ref()).filter(|v| !v.is_null()) else {
        return Ok(base.iter().map(|&f| f as f32).collect());
    };
    let kind =
        scaling.get("rope_type").or_else(|| scaling.get("type")).and_then(|v| v.as_str()).unwrap_or("");
    if kind == "default" {
        return Ok(base.iter().map(|&f| f as f32).collect());
    }
    if kind != "llama3" {
        return Err(format!("rope_scaling type '{kind}' is not supported (default, llama3)"));
    }
    let num =
        |k: &str| scaling.get(k).and_then(serde_json::Value::as_f64).ok_or(format!("rope_scaling lacks {k}"));
    let (factor, low, high) = (num("factor")?, num("low_freq_factor")?, num("high_freq_factor")?);
    let old = num("original_max_position_embeddings")?;
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    Ok(base
        .iter()
        .map(|&f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let scaled = if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                (1.0 - smooth) * f / factor + smooth * f
            };
            scaled as f32
        })
        .collect())
}

fn load_layer(l: &Loader, cfg: &Config, i: usize, q_out: usize, kv_out: usize) -> Result<Layer> {
    let (h, m) = (cfg.hidden_size, cfg.intermediate_size);
    let p = format!("layers.{i}");
    Ok(Layer {
        in_norm_name: l.name(&format!("{p}.input_layernorm.weight"))?,
        post_norm_name: l.name(&format!("{p}.post_attention_layernorm.weight"))?,
        in_norm: l.shaped(&format!("{p}.input_layernorm.weight"), &[h])?,
        q: l.linear(&format!("{p}.self_attn.q_proj"), q_out, h)?,
        k: l.linear(&format!("{p}.self_attn.k_proj"), kv_out, h)?,
        v: l.linear(&format!("{p}.self_attn.v_proj"), kv_out, h)?,
        o: l.linear(&format!("{p}.self_attn.o_proj"), h, q_out)?,
        post_norm: l.shaped(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
        gate: l.linear(&format!("{p}.mlp.gate_proj"), m, h)?,
        up: l.linear(&format!("{p}.mlp.up_proj"), m, h)?,
        down: l.linear(&format!("{p}.mlp.down_proj"), h, m)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"{{"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1,
                "num_attention_heads": 4, "vocab_size": 8{extra}}}"#
        );
        serde_json::from_str(&text).expect("config")
    }

    #[test]
    fn theta_is_read_from_rope_parameters_as_transformers_5_writes_it() {
        let old = rotary_frequencies(&config(r#", "rope_theta": 1000000.0"#), 8).expect("old");
        let new = rotary_frequencies(
            &config(r#", "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}"#),
            8,
        )
        .expect("new");
        let default = rotary_frequencies(&config(""), 8).expect("default");
        assert_eq!(old, new);
        assert_ne!(new, default, "θ = 1e6 must not fall back to 10000");
        assert!((new[1] - 1e6f64.powf(-0.25) as f32).abs() < 1e-9);
    }

    #[test]
    fn llama3_scaling_is_read_from_rope_parameters() {
        let scaling = r#""rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192"#;
        let old = rotary_frequencies(
            &config(&format!(r#", "rope_theta": 500000.0, "rope_scaling": {{{scaling}}}"#)),
            8,
        )
        .expect("old");
        let new = rotary_frequencies(
            &config(&format!(r#", "rope_parameters": {{"rope_theta": 500000.0, {scaling}}}"#)),
            8,
        )
        .expect("new");
        let plain = rotary_frequencies(&config(r#", "rope_theta": 500000.0"#), 8).expect("plain");
        assert_eq!(old, new);
        assert_ne!(new, plain, "the lowest frequencies are divided by the factor");
    }

    #[test]
    fn a_sliding_window_applies_unless_the_config_turns_it_off() {
        assert_eq!(config(r#", "sliding_window": 2, "use_sliding_window": false"#).window(), usize::MAX);
        assert_eq!(config(r#", "sliding_window": 2, "use_sliding_window": true"#).window(), 2);
        assert_eq!(config(r#", "sliding_window": 2"#).window(), 2, "Mistral writes no use_sliding_window");
        assert_eq!(config("").window(), usize::MAX);
    }
}
