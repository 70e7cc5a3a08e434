//! compressed-tensors, the storage format llm-compressor writes and vLLM loads,
//! as one vocabulary used in both directions: the writer (`export`) and the
//! reader (`quantized`) both stand on it and neither imports the other, and the
//! sweep and planner count bytes with it.
//!
//! - [`format`]: the format names (`pack-quantized`, `nvfp4-pack-quantized`, …)
//!   and the scheme ↔ format table;
//! - [`names`]: the tensor-name suffixes of a layer (`weight_packed`, …);
//! - [`layout`]: the tensors a layer becomes, their dtypes and shapes, and
//!   [`stored_bytes`];
//! - [`bitpack`]: the bit packing of codes and zero points;
//! - [`config`]: config groups and the `quantization_config` block.
//!
//! Another storage format (GGUF) is a sibling module with the same shape.

pub mod bitpack;
pub mod config;
pub mod format;
pub mod layout;
pub mod names;
pub mod packed;

pub use config::{ConfigGroup, config_group_key};
pub use format::{Activations, CtFormat, saves_quantized};
pub use layout::stored_bytes;
