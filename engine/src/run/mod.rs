//! Forward passes of the opened model on the CPU (candle), for what weights alone
//! cannot tell: the inputs each Linear layer sees, and how a quantized layer
//! changes the model's output.
//!
//! The forwards are written here with candle-nn building blocks rather than taken
//! from candle-transformers, because its models have no way to see a Linear's
//! input or to swap one weight: every Linear goes through [`Hook`], which the
//! capture ([`capture`]) and the sensitivity runs use. Tests prove the outputs
//! equal candle-transformers' models (and transformers', `tests/python/`).
//!
//! Supported: the BERT family (`bert`) and the Llama / Qwen2 / Mistral family
//! (`decoder`); anything else is refused with one line, and every weight-only
//! feature keeps working without a forward.

pub mod act_quant;
mod attention;
pub mod awq;
pub mod awq_view;
pub mod bert;
pub mod capture;
pub mod decoder;
pub mod gptq_view;
pub mod inputs;
pub mod output_error;
pub mod pack;
mod rows;
pub mod sensitivity;
pub mod sequential;
pub mod store;
mod weights;

use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};

pub use capture::{Activations, SiteStats, capture};
pub use inputs::{BUILTIN_TEXT, read_samples};
pub use pack::{PACK_TOKENS, Pack};

/// At most this many tokens per sample (docs/numerics.md, "Running the model").
pub const MAX_TOKENS: usize = 128;

/// Sees every Linear layer's input and may replace its weight.
pub trait Hook {
    /// `x` (`[tokens, in_features]`) is the input of the Linear layers `layers`
    /// (weight tensor names); layers fed by the same tensor are named together.
    fn input(&mut self, layers: &[&str], x: &Tensor) -> candle_core::Result<()> {
        let _ = (layers, x);
        Ok(())
    }
    /// The tensor to use instead of the checkpoint's, by name: a Linear's
    /// weight (a quantized R′) or bias, a norm's weight (AWQ's fold).
    fn weight(&self, name: &str) -> Option<&Tensor> {
        let _ = name;
        None
    }
}

/// The float model, untouched.
pub struct NoHook;
impl Hook for NoHook {}

/// What the model's output is, which decides the end-to-end measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Last hidden state `[tokens, hidden]`.
    Encoder,
    /// Next-token logits `[tokens, vocab]`.
    Decoder,
}

enum Net {
    Bert(bert::Bert),
    Decoder(decoder::Decoder),
}

/// A model that can run: weights as candle tensors (f32), config and tokenizer.
pub struct Model {
    net: Net,
    /// None when the folder has no tokenizer.json (ids can still be run).
    tokenizer: Option<tokenizers::Tokenizer>,
    /// The model folder (config.json, tokenizer.json).
    pub dir: PathBuf,
}

impl Model {
    /// Loads the forward for `ckpt`'s folder: config.json decides the
    /// architecture, tokenizer.json the tokenizer. Unsupported architectures
    /// and missing files are one-line errors naming the file.
    pub fn load(ckpt: &Checkpoint) -> Result<Self> {
        let dir = ckpt.dir.clone();
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::format(&config_path, e.to_string()))?;
        let model_type = config.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        let net = match model_type {
            "bert" => Net::Bert(bert::Bert::load(ckpt, &config_path, &text)?),
            "llama" | "qwen2" | "mistral" => Net::Decoder(decoder::Decoder::load(ckpt, &config_path, &text)?),
            other => {
                let other = if other.is_empty() { "none given" } else { other };
                return Err(Error::format(
                    &config_path,
                    format!(
                        "model_type '{other}' cannot be run (supported: bert, llama, qwen2, mistral); \
                         weight analysis still works"
                    ),
                ));
            }
        };
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = if tok_path.is_file() { Some(load_tokenizer(&tok_path)?) } else { None };
        Ok(Self { net, tokenizer, dir })
    }

    pub fn kind(&self) -> Kind {
        match self.net {
            Net::Bert(_) => Kind::Encoder,
            Net::Decoder(_) => Kind::Decoder,
        }
    }

    /// Every Linear layer's weight name, in forward order.
    pub fn linears(&self) -> Vec<String> {
        match &self.net {
            Net::Bert(m) => m.linears(),
            Net::Decoder(m) => m.linears(),
        }
    }

    /// The Linear layers after the last block whose output the measured output
    /// does not use (BERT's pooler): [`Self::tail`] feeds them, a forward does not.
    pub fn tail_linears(&self) -> Vec<String> {
        match &self.net {
            Net::Bert(m) => m.tail_linears(),
            Net::Decoder(_) => Vec::new(),
        }
    }

    /// Shows the hook the inputs of the Linear layers after the last block, from
    /// `x`, the last block's output for a pack: `lm_head`'s, and those of
    /// [`Self::tail_linears`]. A method that calibrates every Linear layer block
    /// by block (GPTQ) ends here.
    pub fn tail(&self, x: &Tensor, pack: &Pack, hook: &mut dyn Hook) -> Result<()> {
        let r = match &self.net {
            Net::Bert(m) => m.tail(x, pack, hook),
            Net::Decoder(m) => m.head(x, hook).map(drop),
        };
        r.map_err(|e| self.error(&e))
    }

    /// The float weight of a Linear layer (`[out, in]`).
    pub fn weight(&self, layer: &str) -> Option<&Tensor> {
        match &self.net {
            Net::Bert(m) => m.weight(layer),
            Net::Decoder(m) => m.weight(layer),
        }
    }

    /// Any tensor a block uses, by name: a Linear's weight or bias, a norm's weight.
    pub fn parameter(&self, name: &str) -> Option<&Tensor> {
        match &self.net {
            Net::Bert(m) => m.weight(name),
            Net::Decoder(m) => m.parameter(name),
        }
    }

    /// AWQ's mappings in block `i` (`awq`): the Llama / Qwen2 / Mistral family only.
    pub fn awq_mappings(&self, i: usize) -> Result<Vec<awq::Mapping>> {
        match &self.net {
            Net::Decoder(m) => Ok(m.awq_mappings(i)),
            Net::Bert(_) => Err(Error::format(
                self.dir.join("config.json"),
                "AWQ has mappings for Llama, Qwen2 and Mistral decoders only, not BERT",
            )),
        }
    }

    /// One part of block `i` (AWQ's loss): `x` is the input its first Linear sees.
    pub fn part(
        &self,
        i: usize,
        part: &awq::Part,
        x: &Tensor,
        pack: &Pack,
        hook: &mut dyn Hook,
    ) -> Result<Tensor> {
        let y = match &self.net {
            Net::Decoder(m) => m.part(i, part, x, pack, hook),
            Net::Bert(_) => Err(candle_core::Error::Msg("AWQ runs on decoders only".into())),
        };
        y.map_err(|e| self.error(&e))
    }

    /// Token ids of one sample: special tokens added, at most [`MAX_TOKENS`], no padding.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let path = self.dir.join("tokenizer.json");
        let Some(tok) = &self.tokenizer else {
            return Err(Error::format(path, "missing: cannot tokenize the inputs without it"));
        };
        let enc = tok.encode(text, true).map_err(|e| Error::format(&path, e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// One sample through the model: the last hidden state (encoders) or the
    /// logits (decoders), `[tokens, ·]`.
    pub fn forward(&self, ids: &[u32], hook: &mut dyn Hook) -> Result<Tensor> {
        self.forward_pack(&Pack::one(ids), hook)
    }

    /// Every sample of `pack` through the model at once (each alone, as
    /// [`Self::forward`] would run it): its rows are the samples' tokens in order.
    pub fn forward_pack(&self, pack: &Pack, hook: &mut dyn Hook) -> Result<Tensor> {
        let x = self.embed(pack)?;
        self.forward_from(0, &x, pack, hook)
    }

    /// The input of block 0 for a pack (the embeddings).
    pub fn embed(&self, pack: &Pack) -> Result<Tensor> {
        let x = match &self.net {
            Net::Bert(m) => m.embed(pack),
            Net::Decoder(m) => m.embed(pack),
        };
        x.map_err(|e| self.error(&e))
    }

    /// Transformer blocks (encoder or decoder layers).
    pub fn blocks(&self) -> usize {
        match &self.net {
            Net::Bert(m) => m.blocks(),
            Net::Decoder(m) => m.blocks(),
        }
    }

    /// The block a Linear layer belongs to; [`Self::blocks`] for one after every
    /// block (`lm_head`). A run that changes only this layer can start there.
    pub fn block_of(&self, layer: &str) -> usize {
        let b = match &self.net {
            Net::Bert(m) => m.block_of(layer),
            Net::Decoder(m) => m.block_of(layer),
        };
        b.unwrap_or_else(|| self.blocks())
    }

    /// Block `i` applied to `x`, the pack's input of that block.
    pub fn block(&self, i: usize, x: &Tensor, pack: &Pack, hook: &mut dyn Hook) -> Result<Tensor> {
        let y = match &self.net {
            Net::Bert(m) => m.block(i, x, pack, hook),
            Net::Decoder(m) => m.block(i, x, pack, hook),
        };
        y.map_err(|e| self.error(&e))
    }

    /// The rest of the forward from `x`, the pack's input of block `from`: the model's output.
    pub fn forward_from(&self, from: usize, x: &Tensor, pack: &Pack, hook: &mut dyn Hook) -> Result<Tensor> {
        let mut x = x.clone();
        for i in from..self.blocks() {
            x = self.block(i, &x, pack, hook)?;
        }
        match &self.net {
            Net::Bert(_) => Ok(x),
            Net::Decoder(m) => m.head(&x, hook).map_err(|e| self.error(&e)),
        }
    }

    /// A candle failure as a one-line error naming the model folder.
    pub(crate) fn error(&self, e: &candle_core::Error) -> Error {
        candle_error(&self.dir, e)
    }
}

pub(crate) fn candle_error(dir: &Path, e: &candle_core::Error) -> Error {
    let line = e.to_string().lines().next().unwrap_or_default().to_string();
    Error::format(dir, format!("forward pass failed: {line}"))
}

fn load_tokenizer(path: &Path) -> Result<tokenizers::Tokenizer> {
    let mut tok = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::format(path, e.to_string()))?;
    // Each sample runs alone: padding would add tokens the statistics must not see.
    tok.with_padding(None);
    let trunc = tokenizers::TruncationParams { max_length: MAX_TOKENS, ..Default::default() };
    tok.with_truncation(Some(trunc)).map_err(|e| Error::format(path, e.to_string()))?;
    Ok(tok)
}
