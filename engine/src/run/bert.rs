//! The BERT-family encoder (MiniLM, BERT, …) as transformers' `BertModel` computes
//! it: embeddings + LayerNorm, then per layer self-attention, LayerNorm, GELU MLP,
//! LayerNorm. Samples are packed ([`Pack`]): attention stays within each sample
//! and positions restart at each, so there is no padding and no mask.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::Deserialize;

use super::Hook;
use super::attention::{Shape, attend};
use super::pack::Pack;
use super::rows;
use super::weights::{Linear, Loader, show};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};

#[derive(Clone, Debug, Deserialize)]
struct Config {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "gelu")]
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default = "eps")]
    layer_norm_eps: f64,
}

fn gelu() -> String {
    "gelu".into()
}
fn eps() -> f64 {
    1e-12
}

struct Norm {
    g: Tensor,
    b: Tensor,
}

impl Norm {
    fn load(l: &Loader, name: &str, n: usize) -> Result<Self> {
        Ok(Self {
            g: l.shaped(&format!("{name}.weight"), &[n])?,
            b: l.shaped(&format!("{name}.bias"), &[n])?,
        })
    }
    fn forward(&self, x: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.g, &self.b, eps as f32)
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    attn_norm: Norm,
    up: Linear,
    down: Linear,
    out_norm: Norm,
}

/// A loaded BERT encoder.
pub struct Bert {
    cfg: Config,
    words: Tensor,
    positions: Tensor,
    types: Tensor,
    emb_norm: Norm,
    layers: Vec<Layer>,
    /// `BertModel`'s pooler (a Linear on each sample's first token), when the
    /// checkpoint has one. The measured output (the last hidden state) does
    /// not use it; only [`Bert::tail`] feeds it.
    pooler: Option<Linear>,
}

impl Bert {
    pub(crate) fn load(ckpt: &Checkpoint, config_path: &Path, text: &str) -> Result<Self> {
        let cfg: Config =
            serde_json::from_str(text).map_err(|e| Error::format(config_path, e.to_string()))?;
        if !matches!(cfg.hidden_act.as_str(), "gelu" | "relu" | "gelu_new") {
            return Err(Error::format(
                config_path,
                format!("hidden_act '{}' is not supported", cfg.hidden_act),
            ));
        }
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(Error::format(config_path, "hidden_size is not a multiple of num_attention_heads"));
        }
        let mut l = Loader { ckpt, prefix: String::new(), config: config_path };
        if !l.has("embeddings.word_embeddings.weight")
            && ckpt.tensor("bert.embeddings.word_embeddings.weight").is_ok()
        {
            l.prefix = "bert.".into();
        }
        let h = cfg.hidden_size;
        let words = l.tensor("embeddings.word_embeddings.weight")?;
        let positions = l.tensor("embeddings.position_embeddings.weight")?;
        let types = l.tensor("embeddings.token_type_embeddings.weight")?;
        let emb_norm = Norm::load(&l, "embeddings.LayerNorm", h)?;
        let layers = (0..cfg.num_hidden_layers).map(|i| load_layer(&l, &cfg, i)).collect::<Result<_>>()?;
        let pooler = if l.has("pooler.dense.weight") { Some(l.linear("pooler.dense", h, h)?) } else { None };
        Ok(Self { cfg, words, positions, types, emb_norm, layers, pooler })
    }

    pub(crate) fn linears(&self) -> Vec<String> {
        let mut v = Vec::new();
        for l in &self.layers {
            v.extend([&l.q, &l.k, &l.v, &l.o, &l.up, &l.down].map(|x| x.name.clone()));
        }
        v
    }

    pub(crate) fn weight(&self, name: &str) -> Option<&Tensor> {
        self.layers
            .iter()
            .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.up, &l.down])
            .chain(&self.pooler)
            .find(|x| x.name == name)
            .map(|x| &x.w)
    }

    /// The pooler's weight name, when there is one.
    pub(crate) fn tail_linears(&self) -> Vec<String> {
        self.pooler.iter().map(|p| p.name.clone()).collect()
    }

    /// Shows the pooler its input, each sample's first token of `x` (the last
    /// block's output), as transformers' `BertPooler` takes it.
    pub(crate) fn tail(&self, x: &Tensor, pack: &Pack, hook: &mut dyn Hook) -> candle_core::Result<()> {
        let Some(pooler) = &self.pooler else { return Ok(()) };
        let first: Vec<u32> = pack.ranges().map(|r| r.start as u32).collect();
        show(hook, &[pooler], &x.index_select(&Tensor::new(first, &Device::Cpu)?, 0)?)
    }

    /// Embeddings + LayerNorm of a pack: the input of block 0, `[tokens, hidden]`.
    pub(crate) fn embed(&self, pack: &Pack) -> candle_core::Result<Tensor> {
        let t = pack.longest();
        if t > self.cfg.max_position_embeddings {
            candle_core::bail!("{t} tokens, the model takes at most {}", self.cfg.max_position_embeddings);
        }
        let ids = Tensor::new(pack.ids(), &Device::Cpu)?;
        let words = self.words.index_select(&ids, 0)?;
        // Token type 0 throughout: one segment per sample.
        let types = self.types.narrow(0, 0, 1)?;
        let pos = self.positions.index_select(&Tensor::new(pack.positions(), &Device::Cpu)?, 0)?;
        let emb = rows::add(&rows::zip(&words, &types, Tensor::broadcast_add)?, &pos)?;
        self.emb_norm.forward(&emb, self.cfg.layer_norm_eps)
    }

    pub(crate) fn blocks(&self) -> usize {
        self.layers.len()
    }

    /// Encoder layer `i` applied to its input (the pack's tokens).
    pub(crate) fn block(
        &self,
        i: usize,
        x: &Tensor,
        pack: &Pack,
        hook: &mut dyn Hook,
    ) -> candle_core::Result<Tensor> {
        self.layer(&self.layers[i], x, pack, hook)
    }

    /// The encoder layer holding a Linear layer.
    pub(crate) fn block_of(&self, name: &str) -> Option<usize> {
        self.layers
            .iter()
            .position(|l| [&l.q, &l.k, &l.v, &l.o, &l.up, &l.down].iter().any(|x| x.name == name))
    }

    fn layer(&self, l: &Layer, x: &Tensor, pack: &Pack, hook: &mut dyn Hook) -> candle_core::Result<Tensor> {
        let eps = self.cfg.layer_norm_eps;
        show(hook, &[&l.q, &l.k, &l.v], x)?;
        let heads = self.cfg.num_attention_heads;
        let shape = Shape {
            heads,
            kv_heads: heads,
            head_dim: self.cfg.hidden_size / heads,
            causal: false,
            window: usize::MAX,
        };
        let ctx =
            attend(&l.q.forward(x, hook)?, &l.k.forward(x, hook)?, &l.v.forward(x, hook)?, pack, shape)?;
        show(hook, &[&l.o], &ctx)?;
        let a = l.attn_norm.forward(&rows::add(&l.o.forward(&ctx, hook)?, x)?, eps)?;
        show(hook, &[&l.up], &a)?;
        let up = l.up.forward(&a, hook)?;
        let act = match self.cfg.hidden_act.as_str() {
            "relu" => rows::map(&up, Tensor::relu)?,
            "gelu_new" => rows::map(&up, Tensor::gelu)?,
            _ => rows::map(&up, Tensor::gelu_erf)?,
        };
        show(hook, &[&l.down], &act)?;
        l.out_norm.forward(&rows::add(&l.down.forward(&act, hook)?, &a)?, eps)
    }
}

fn load_layer(l: &Loader, cfg: &Config, i: usize) -> Result<Layer> {
    let (h, m) = (cfg.hidden_size, cfg.intermediate_size);
    let p = format!("encoder.layer.{i}");
    Ok(Layer {
        q: l.linear(&format!("{p}.attention.self.query"), h, h)?,
        k: l.linear(&format!("{p}.attention.self.key"), h, h)?,
        v: l.linear(&format!("{p}.attention.self.value"), h, h)?,
        o: l.linear(&format!("{p}.attention.output.dense"), h, h)?,
        attn_norm: Norm::load(l, &format!("{p}.attention.output.LayerNorm"), h)?,
        up: l.linear(&format!("{p}.intermediate.dense"), m, h)?,
        down: l.linear(&format!("{p}.output.dense"), h, m)?,
        out_norm: Norm::load(l, &format!("{p}.output.LayerNorm"), h)?,
    })
}
