//! # quantscope-engine
//!
//! The numerics and I/O behind quantscope, with no GUI dependency. The model:
//!
//! **Checkpoint → Tensor → Scheme → QuantResult**
//!
//! - [`Checkpoint`] opens `.safetensors` files (single, sharded index, or a folder)
//!   by memory-mapping them and lists every tensor ([`TensorInfo`]).
//! - [`Checkpoint::load_f32`] decodes one tensor to f32 ([`decode`]).
//! - A [`Scheme`] is format × mapping × granularity × calibration ([`scheme`]).
//! - [`analyze()`] quantizes a tensor under a scheme: it calibrates each slice
//!   ([`calibrate`]), fake-quantizes through the [`NumberFormat`] trait ([`format`])
//!   and measures the error ([`metrics`]), giving a [`QuantResult`].
//! - [`report`] is the per-tensor record the CLI prints and the GUI shows.
//!
//! All arithmetic follows `docs/numerics.md` (from "Vocabulary" on): f32
//! operations rounded to the tensor's working dtype ([`WorkDtype`]), true
//! division by S, Z added before round-half-to-even, f64 metric sums,
//! saturating FP8.

pub mod analyze;
pub mod awq;
pub mod calibrate;
pub mod checkpoint;
pub mod csv;
pub mod ct;
pub mod decode;
pub mod dequant;
pub mod diff;
pub mod error;
pub mod explain;
pub mod export;
pub mod format;
pub mod fused;
pub mod ggml;
pub mod gguf;
pub mod gptq;
pub mod measure;
pub mod metrics;
mod mmap;
pub mod multi;
pub mod planner;
pub mod quantized;
pub mod rank;
pub mod recipe;
pub mod report;
pub mod run;
pub mod scheme;
mod simd;
mod slicing;
pub mod sweep;
#[doc(hidden)]
pub mod untrusted;
pub mod write;

pub use analyze::{
    Histogram, Options, QuantResult, analyze, analyze_encoded, analyze_stored, compare_calibrations,
};
pub use checkpoint::{Checkpoint, TensorInfo};
pub use error::{Error, Result};
pub use format::{Fp8Format, IntFormat, NumberFormat, SliceParams, WorkDtype};
pub use metrics::{Metrics, TensorStats};
pub use safetensors::Dtype;
pub use scheme::{Calibration, FormatKind, Granularity, ManualRange, Mapping, Scheme};
