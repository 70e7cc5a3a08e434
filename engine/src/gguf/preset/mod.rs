//! llama-quantize's presets (`Q4_K_M`, …): the ggml type llama.cpp chooses for
//! each tensor of a model under a file type, with its fallbacks for rows a
//! K-quant cannot hold, and why, so that a face can show the reason.
//!
//! Followed: llama.cpp as vendored in llama-cpp-python 0.3.36 —
//! `src/llama-quant.cpp` (`llama_model_quantize_impl`'s first pass over the
//! tensors, `llama_tensor_get_type`, `llama_tensor_get_type_impl`,
//! `tensor_allows_quantization`, `tensor_type_fallback`,
//! `tensor_requires_imatrix`, `llama_ftype_get_default_type`),
//! `include/llama.h` (`llama_ftype`) and `tools/quantize/quantize.cpp` (the
//! preset names, `--tensor-type PATTERN=TYPE`). Proved against the real
//! `llama_model_quantize` by `tests/python/gguf_preset_reference.py` and
//! `engine/tests/gguf_preset.rs`.
//!
//! The choice of one tensor, in llama.cpp's order of precedence:
//! 1. tensors llama-quantize never quantizes (1-D, norms, routers, position
//!    embeddings, …; everything under COPY) keep their type;
//! 2. `--token-embedding-type` / `--output-tensor-type` decide those tensors;
//! 3. under F16, BF16 and F32 every other quantizable tensor takes that type;
//! 4. else the first `--tensor-type` pattern found in the name decides, or with
//!    `--pure` the preset's base type, or else the preset's mixture rules
//!    (`mixture`), which read the architecture, GQA, the expert count, the layer
//!    and how many `attn_v` tensors came before;
//! 5. and a type whose blocks do not divide the row falls back to a smaller block
//!    (`fallback: row 384 not a multiple of 256 (Q4_K) → Q5_0`), or to F16.
//!
//! Not ported: `--prune-layers` (renames blocks), `--keep-split` (walks the
//! tensors in file order rather than the loader's), `--override-kv` (could change
//! the hparams read), `--allow-requantize`, the importance matrix's data (only
//! whether one is given matters here), and the Q2_0 preset (its ggml type is not
//! in `ggml::types`). `ModelInfo` reads the generic hparam keys, as
//! `load_hparams` does, plus the 70B size class of the architectures that have
//! one; the two loaders that rewrite the layer count (granite-switch adds a
//! router layer, nanbeige multiplies by its loop count) are not special-cased.

mod ggml;
mod mixture;
mod model;
mod table;
mod tensor;

use std::str::FromStr;

use regex::Regex;

use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use crate::gguf::GgufTensor;
pub use model::ModelInfo;
pub use table::Preset;

/// One `--tensor-type PATTERN=TYPE`: tensors whose name contains a match of the
/// pattern (a regex search, as `std::regex_search`) get the type.
#[derive(Clone, Debug)]
pub struct TensorType {
    regex: Regex,
    ggml_type: GgmlType,
}

impl TensorType {
    /// The pattern as given (quantize.cpp lowercases it first: `parse` does).
    pub fn new(pattern: &str, ggml_type: GgmlType) -> Result<Self> {
        let regex = Regex::new(pattern).map_err(|e| {
            // the regex crate's message spans lines (pattern, caret, error): keep its last
            let why = e.to_string();
            let why = why.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("invalid").trim();
            Error::Scheme(format!(
                "--tensor-type pattern '{}' is not a regex: {}",
                pattern.escape_debug(),
                why.trim_start_matches("error: ")
            ))
        })?;
        Ok(Self { regex, ggml_type })
    }

    /// `PATTERN=TYPE` as llama-quantize parses it: split at the first `=`, the
    /// pattern lowercased, the type a ggml type name in any case.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |why: &str| Error::Scheme(format!("--tensor-type '{}': {why}", spec.escape_debug()));
        let (pattern, ty) = spec.split_once('=').ok_or_else(|| bad("expected PATTERN=TYPE"))?;
        if pattern.is_empty() {
            return Err(bad("missing tensor name pattern"));
        }
        let ggml_type = ggml_type_named(ty)?;
        Self::new(&pattern.to_lowercase(), ggml_type)
    }

    pub fn pattern(&self) -> &str {
        self.regex.as_str()
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

impl FromStr for TensorType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

/// A ggml type by name, any case (`q8_0`), as llama-quantize's type options take it.
pub fn ggml_type_named(name: &str) -> Result<GgmlType> {
    ggml::by_name(name).ok_or_else(|| {
        let names: Vec<&str> = crate::ggml::types::TYPES.iter().map(|t| t.name).collect();
        Error::Scheme(format!("unknown ggml type '{}'; valid: {}", name.escape_debug(), names.join(", ")))
    })
}

/// What llama-quantize is asked to do: everything that changes a tensor's type.
#[derive(Clone, Debug)]
pub struct Options {
    pub preset: Preset,
    /// `--tensor-type`, in order: the first pattern found in a name wins.
    pub tensor_types: Vec<TensorType>,
    /// `--token-embedding-type`.
    pub token_embedding_type: Option<GgmlType>,
    /// `--output-tensor-type`.
    pub output_tensor_type: Option<GgmlType>,
    /// `--pure`: no mixture, the base type everywhere (overrides still apply).
    pub pure: bool,
    /// An importance matrix is given (`--imatrix`): a few rules differ with one.
    pub imatrix: bool,
    /// `--leave-output-tensor`: `output.weight` is copied as it is.
    pub leave_output_tensor: bool,
}

impl Options {
    pub fn new(preset: Preset) -> Self {
        Self {
            preset,
            tensor_types: Vec::new(),
            token_embedding_type: None,
            output_tensor_type: None,
            pure: false,
            imatrix: false,
            leave_output_tensor: false,
        }
    }

    /// The `general.file_type` llama-quantize writes.
    pub fn file_type(&self, info: &ModelInfo) -> u32 {
        if self.preset == Preset::Copy { info.input_file_type } else { self.preset.ftype() }
    }
}

/// One tensor's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub name: String,
    /// Its type in the input.
    pub from: GgmlType,
    /// Its type in llama-quantize's output.
    pub to: GgmlType,
    /// llama-quantize may convert it (`tensor_allows_quantization`); when false
    /// it is copied as it is.
    pub quantizable: bool,
    /// llama-quantize refuses this choice without an importance matrix.
    pub requires_imatrix: bool,
    /// Why `to`, in a few words (`ffn_down: Q6_K (use_more_bits, layer 0 of 16)`).
    pub reason: String,
}

impl Choice {
    /// Whether the tensor's bytes change.
    pub fn converted(&self) -> bool {
        self.from != self.to
    }
}

/// The type llama-quantize gives every tensor, in the order of `tensors`.
/// `Err` where llama-quantize fails too: a duplicated name, a row no type of the
/// preset can hold, an expert tensor whose layer cannot be read from its name.
pub fn choose(info: &ModelInfo, tensors: &[GgufTensor], opts: &Options) -> Result<Vec<Choice>> {
    // llama.cpp walks its loader's order (by block, then name); the counters follow it
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| tensor::llama_order(&tensors[a].name, &tensors[b].name));
    if let Some(w) = order.windows(2).find(|w| tensors[w[0]].name == tensors[w[1]].name) {
        return Err(plan_error(&tensors[w[0]].name, "the name is duplicated"));
    }
    let mut mixture =
        mixture::Mixture::new(info, tensors, opts.preset, opts.output_tensor_type, opts.imatrix);
    let mut out: Vec<Option<Choice>> = vec![None; tensors.len()];
    for i in order {
        let t = &tensors[i];
        out[i] = Some(choose_one(info, t, opts, &mut mixture).map_err(|why| plan_error(&t.name, &why))?);
    }
    Ok(out.into_iter().flatten().collect())
}

fn plan_error(tensor: &str, reason: &str) -> Error {
    Error::Plan {
        tensor: Some(tensor.escape_debug().to_string()),
        reason: format!("llama-quantize: {reason}"),
    }
}

/// `llama_tensor_get_type` for one tensor, then whether it needs an imatrix.
fn choose_one(
    info: &ModelInfo,
    t: &GgufTensor,
    opts: &Options,
    mixture: &mut mixture::Mixture<'_>,
) -> std::result::Result<Choice, String> {
    let choice = |to: GgmlType, quantizable: bool, reason: String| Choice {
        name: t.name.clone(),
        from: t.ggml_type,
        to,
        quantizable,
        requires_imatrix: quantizable && tensor::requires_imatrix(&t.name, to, opts.preset),
        reason,
    };
    let copy = opts.preset == Preset::Copy;
    if let Some(why) = tensor::kept_because(t, &info.arch, opts.leave_output_tensor, copy) {
        return Ok(choice(t.ggml_type, false, format!("kept: {why}")));
    }
    let cat = tensor::Category::of(&t.name);
    let named = || opts.tensor_types.iter().find(|tt| tt.matches(&t.name));
    if let (Some(ty), tensor::Category::TokenEmbd) = (opts.token_embedding_type, cat) {
        // a --tensor-type naming per_layer_token_embd beats --token-embedding-type
        if t.name != "per_layer_token_embd.weight" || named().is_none() {
            return Ok(choice(ty, true, "--token-embedding-type".into()));
        }
    }
    if let (Some(ty), tensor::Category::Output) = (opts.output_tensor_type, cat) {
        return Ok(choice(ty, true, "--output-tensor-type".into()));
    }
    let base = opts.preset.base_type();
    if !ggml::is_quantized(base) {
        return Ok(choice(base, true, format!("{}: every quantizable tensor is {}", opts.preset, base.name)));
    }
    let (ty, mut why) = if let Some(tt) = named() {
        (tt.ggml_type, format!("--tensor-type {}={}", tt.pattern(), tt.ggml_type.name))
    } else if opts.pure {
        (base, format!("--pure: {} base type {}", opts.preset, base.name))
    } else {
        mixture.pick(t, cat, base)?
    };
    let ncols = t.ne.first().copied().unwrap_or(0);
    let ty = match tensor::fallback(ncols, ty)? {
        Some((to, fallback_why)) => {
            why = format!("{why}; {fallback_why}");
            to
        }
        None => ty,
    };
    Ok(choice(ty, true, why))
}
