//! Reading checkpoints that someone else quantized: compressed-tensors
//! (`pack-quantized`, `int-quantized`, `float-quantized`, `naive-quantized`, FP8
//! blocks, `mixed-precision`), block-scaled FP8 (`quant_method: "fp8"`), GPTQ
//! and AWQ GEMM. Each quantized layer is found by its stored tensor names
//! (`weight_packed`, `qweight`, `weight_scale_inv`, …), its scheme comes from
//! `config.json`'s `quantization_config` (or from the names and shapes when
//! there is none), and it decodes to R′ through [`dequant`], the same
//! `NumberFormat::dequantize` the save uses (docs/numerics.md, "Reading
//! quantized checkpoints").
//!
//! A GGUF file (llama.cpp's) is read the same way: each tensor ggml stores as
//! a block type is a layer, decoded by [`crate::ggml`] bit for bit.
//!
//! A layer that cannot be read becomes a [`Failure`] naming its tensor; the rest
//! of the model still opens. New layouts (NVFP4, MX) slot in as one more
//! [`Layout`] arm with its reader.

pub mod config;
mod ct;
mod gguf;
mod gptq;
pub mod view;

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::dequant;
use crate::error::{Error, Result};
use crate::scheme::{FormatKind, Scheme};
pub use config::Method;

/// How a layer is stored (which tensors hold its codes and parameters).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Layout {
    /// compressed-tensors `pack-quantized`: `weight_packed` + `weight_shape`.
    Packed,
    /// Codes in `X.weight` (I8 or F8) with `X.weight_scale` (any strategy but
    /// block) or `X.weight_scale_inv` / block-shaped `weight_scale` (blocks).
    Unpacked {
        scale: &'static str,
    },
    Gptq(config::GptqConfig),
    Awq(config::GptqConfig),
    /// NVFP4 / MXFP4 / MXFP8: FP4 or FP8 codes with 8-bit block scales.
    Micro,
    /// A GGUF tensor of this ggml block type; `rope_heads` when its rows are
    /// in the converter's rope order and the layer is named for a Hugging Face
    /// original (R′ is put back in that order).
    Ggml {
        ty: crate::ggml::GgmlType,
        rope_heads: Option<usize>,
    },
}

/// A layer's stored scheme, as the browser and `diff` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredScheme {
    /// `pack-quantized`, `int-quantized`, `float-quantized`, `naive-quantized`,
    /// `fp8` (block-scaled), `gptq`, `awq`.
    pub format: String,
    pub bits: u8,
    /// "tensor", "channel", "group" or "block".
    pub granularity: String,
    pub group_size: Option<usize>,
    pub block: Option<[usize; 2]>,
    pub symmetric: bool,
    /// The scales' dtype, e.g. "F16".
    pub scale_dtype: String,
    /// GPTQ `desc_act`: columns quantized in a permuted order (`g_idx`).
    pub act_order: bool,
    /// The nearest quantscope short form (min-max), e.g. `int4:group128:minmax:asym`.
    pub short: String,
    /// Bits per weight as stored, scales included (GGUF types).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits_per_weight: Option<f64>,
}

impl StoredScheme {
    /// quantscope's round-to-nearest min-max scheme of the same format and
    /// granularity, when the engine has one (not yet for FP8 blocks).
    pub fn rtn_equivalent(&self) -> Option<Scheme> {
        self.short.parse().ok()
    }
}

/// One quantized layer of the checkpoint.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The original weight's name, `<module>.weight`.
    pub name: String,
    pub module: String,
    /// The original weight's shape `[out, in]`.
    pub shape: Vec<usize>,
    pub stored: StoredScheme,
    /// The stored tensors this layer reads.
    pub tensors: Vec<String>,
    pub(crate) layout: Layout,
    pub(crate) kind: FormatKind,
}

/// A layer that could not be read, with a one-line reason.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    pub tensor: String,
    pub reason: String,
}

/// An opened quantized checkpoint.
pub struct QuantizedModel {
    pub ckpt: Checkpoint,
    pub method: Method,
    pub layers: Vec<Layer>,
    pub failed: Vec<Failure>,
    /// Tensors stored as plain values (biases, norms, ignored layers).
    pub plain: Vec<String>,
}

/// Suffixes that mark a module as quantized, and the layout each implies.
const MARKERS: [&str; 4] = [".weight_packed", ".qweight", ".weight_scale_inv", ".weight_scale"];

impl QuantizedModel {
    /// Opens a file, index or folder and finds every quantized layer. Fails only
    /// when the checkpoint itself or its `quantization_config` cannot be read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let ckpt = Checkpoint::open(path)?;
        if let Some(h) = ckpt.gguf() {
            let method =
                Method::Gguf { file_type: h.get("general.file_type").and_then(crate::gguf::Value::as_u64) };
            return Ok(gguf::model(ckpt, method));
        }
        let method = config::read(&ckpt.dir)?;
        Ok(Self::from_checkpoint(ckpt, method))
    }

    /// Finds the quantized layers of an opened checkpoint under `method`.
    pub fn from_checkpoint(ckpt: Checkpoint, method: Method) -> Self {
        let mut seen = HashSet::new();
        let modules: Vec<String> = ckpt
            .tensors()
            .iter()
            .filter_map(|t| MARKERS.iter().find_map(|m| t.name.strip_suffix(m)))
            .filter(|m| seen.insert(m.to_string()))
            .map(str::to_string)
            .collect();
        let (mut layers, mut failed, mut claimed) = (Vec::new(), Vec::new(), HashSet::new());
        for module in modules {
            let name = format!("{module}.weight");
            let prefix = format!("{module}.");
            // Every stored part of the module belongs to it, read or not
            // (a bias is plain even here).
            let parts = ckpt.tensors().iter().filter(|t| {
                t.name.strip_prefix(&prefix).is_some_and(|s| s.starts_with("weight") || is_gptq_part(s))
            });
            claimed.extend(parts.map(|t| t.name.clone()));
            match read_layer(&ckpt, &method, &module) {
                Ok(l) => layers.push(l),
                Err(reason) => failed.push(Failure { tensor: name, reason }),
            }
        }
        let plain =
            ckpt.tensors().iter().filter(|t| !claimed.contains(&t.name)).map(|t| t.name.clone()).collect();
        Self { ckpt, method, layers, failed, plain }
    }

    /// R′ of one layer, row-major in its original shape.
    pub fn dequantize(&self, layer: &Layer) -> Result<Vec<f32>> {
        self.decode(layer).map(|d| d.values)
    }

    /// [`Self::dequantize`] into `out`, reusing its memory: layer after layer
    /// through one buffer costs no allocation and no page faults.
    pub fn dequantize_into(&self, layer: &Layer, out: &mut Vec<f32>) -> Result<()> {
        let d = self.decode_reusing(layer, std::mem::take(out))?;
        *out = d.values;
        Ok(())
    }

    /// R′ of one layer with its slices' parameters.
    pub fn decode(&self, layer: &Layer) -> Result<dequant::Decoded> {
        self.decode_reusing(layer, Vec::new())
    }

    /// [`Self::decode`] with R′ written into `buf`'s memory (take it back from
    /// `Decoded::values` for the next layer).
    pub fn decode_reusing(&self, layer: &Layer, buf: Vec<f32>) -> Result<dequant::Decoded> {
        let infos: Vec<_> = layer.tensors.iter().filter_map(|t| self.ckpt.tensor(t).ok()).collect();
        for &i in &infos {
            self.ckpt.prefetch(i);
        }
        let grid = match &layer.layout {
            Layout::Packed | Layout::Unpacked { .. } => ct::grid(&self.ckpt, layer),
            Layout::Gptq(c) => gptq::grid(&self.ckpt, layer, c, false),
            Layout::Awq(c) => gptq::grid(&self.ckpt, layer, c, true),
            Layout::Micro => ct::micro_grid(&self.ckpt, layer),
            Layout::Ggml { ty, rope_heads } => {
                let r = gguf::decode(&self.ckpt, layer, *ty, *rope_heads, buf);
                for i in infos {
                    self.ckpt.release(i);
                }
                return r;
            }
        };
        let fail = |reason: String| Error::Tensor {
            path: self.ckpt.path.clone(),
            tensor: layer.name.clone(),
            reason,
        };
        let grid = grid.and_then(|g| dequant::check(&g).map(|()| g)).map_err(fail);
        let r = grid.and_then(|g| dequant::decode_into(g, buf));
        for i in infos {
            self.ckpt.release(i);
        }
        r
    }

    /// The same model named as `orig` names its tensors: a GGUF file compared
    /// with a Hugging Face checkpoint takes the original's names (and undoes
    /// the converter's rope row order); anything else is left as it is.
    #[must_use]
    pub fn aligned_to(self, orig: &Checkpoint) -> Self {
        if orig.gguf().is_some() {
            return self;
        }
        gguf::aligned_to(self, orig)
    }

    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name == name)
    }
}

fn is_gptq_part(s: &str) -> bool {
    matches!(s, "qweight" | "qzeros" | "scales" | "g_idx")
}

fn read_layer(ckpt: &Checkpoint, method: &Method, module: &str) -> Result<Layer, String> {
    let has = |s: &str| ckpt.tensor(&format!("{module}.{s}")).is_ok();
    if has("qweight") {
        return gptq::layer(ckpt, method, module);
    }
    match method {
        Method::Gptq(_) | Method::Awq(_) => {
            return Err(format!("{} checkpoint but no {module}.qweight", method.name()));
        }
        _ => {}
    }
    ct::layer(ckpt, method, module)
}

/// The quantscope short form of a stored INT or FP8 scheme.
pub(crate) fn short_form(fmt: &str, granularity: &str, size: Option<usize>, symmetric: bool) -> String {
    let gran = match (granularity, size) {
        ("group", Some(g)) => format!("group{g}"),
        ("block", Some(b)) => format!("block{b}"),
        (g, _) => g.to_string(),
    };
    let sym = if symmetric { "" } else { ":asym" };
    format!("{fmt}:{gran}:minmax{sym}")
}
