//! GPTQ and AWQ (GEMM) layers, following the reference unpacking code:
//!
//! - GPTQ, GPTQModel `gptqmodel/nn_modules/qlinear/__init__.py` (`pack_original`,
//!   `dequantize_weight`) at ModelCloud/GPTQModel commit
//!   f4c327a17eb3e24524d5a97a3d682e3696ae6a28. `qweight` I32 `[ceil(in·b/32), out]`
//!   holds unsigned b-bit codes as one little-endian bit stream down each
//!   column (3-bit codes straddle words), `qzeros` I32 `[groups, ceil(out·b/32)]`
//!   the zero points as a bit stream along each row, `scales` `[groups, out]`,
//!   `g_idx` I32 `[in]` each input column's group. v1 checkpoints (AutoGPTQ,
//!   `checkpoint_format: "gptq"`) store zero − 1; GPTQModel's `gptq_v2` does not.
//!   R′ = D(D(q − z) · S) with D = the scales' dtype (F16).
//! - AWQ GEMM, AutoAWQ `awq/utils/packing_utils.py` (`unpack_awq`,
//!   `reverse_awq_order`, `dequantize_gemm`) at casper-hansen/AutoAWQ commit
//!   88e4c76b20755db275574e6a03c83c84ba3bece5: `qweight` I32 `[in, out/8]` and
//!   `qzeros` I32 `[groups, out/8]`, 4-bit codes packed along the output
//!   dimension in the interleaved order 0, 2, 4, 6, 1, 3, 5, 7; no zero offset.
//!
//! Unsigned codes u and zeros z become the engine's signed codes by subtracting
//! 2^(b−1) from both, which leaves q − z, and so R′, unchanged.

use safetensors::Dtype;

use super::config::{GptqConfig, Method};
use super::ct::slice_params;
use super::{Layer, Layout, StoredScheme, short_form};
use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::ct::bitpack::{bytes_to_words, unpack_rows, words_per_line};
use crate::decode;
use crate::dequant::AWQ_ORDER;
use crate::dequant::{Codes, Grid, SliceMap};
use crate::format::WorkDtype;
use crate::scheme::FormatKind;

struct Parts<'a> {
    qweight: &'a TensorInfo,
    qzeros: &'a TensorInfo,
    scales: &'a TensorInfo,
    g_idx: Option<&'a TensorInfo>,
}

fn parts<'a>(ckpt: &'a Checkpoint, module: &str) -> Result<Parts<'a>, String> {
    let t = |s: &str| ckpt.tensor(&format!("{module}.{s}")).map_err(|_| format!("{module}.{s} is missing"));
    let p =
        Parts { qweight: t("qweight")?, qzeros: t("qzeros")?, scales: t("scales")?, g_idx: t("g_idx").ok() };
    for (n, i) in [("qweight", p.qweight), ("qzeros", p.qzeros)] {
        if i.dtype != Dtype::I32 || i.shape.len() != 2 {
            return Err(format!("{n} is {:?} {:?}, expected I32 2-D", i.dtype, i.shape));
        }
    }
    if !matches!(p.scales.dtype, Dtype::F16 | Dtype::BF16 | Dtype::F32) || p.scales.shape.len() != 2 {
        return Err(format!(
            "scales is {:?} {:?}, expected F16 [groups, out]",
            p.scales.dtype, p.scales.shape
        ));
    }
    Ok(p)
}

/// Finds and checks a GPTQ or AWQ layer from its header.
pub(super) fn layer(ckpt: &Checkpoint, method: &Method, module: &str) -> Result<Layer, String> {
    let p = parts(ckpt, module)?;
    let (groups, out) = (p.scales.shape[0], p.scales.shape[1]);
    // Without a config the layout tells GPTQ (qweight's columns are the outputs) from AWQ.
    let (cfg, awq) = match method {
        Method::Gptq(c) => (c.clone(), false),
        Method::Awq(c) => (c.clone(), true),
        _ => {
            let awq = p.qweight.shape[1] != out;
            let c = GptqConfig {
                bits: 4,
                group_size: None,
                sym: !awq,
                desc_act: false,
                zero_offset: i32::from(!awq),
            };
            (c, awq)
        }
    };
    let bits = cfg.bits;
    let inp = if awq {
        p.qweight.shape[0]
    } else {
        p.g_idx.map_or(p.qweight.shape[0] * 32 / usize::from(bits), |g| g.shape.iter().product())
    };
    let (qw_want, qz_want) = if awq {
        ([inp, out.div_ceil(8)], [groups, out.div_ceil(8)])
    } else {
        ([words_per_line(inp, bits), out], [groups, words_per_line(out, bits)])
    };
    if p.qweight.shape != qw_want {
        return Err(format!(
            "qweight is {:?}, expected {qw_want:?} for [{out}, {inp}] at {bits} bits",
            p.qweight.shape
        ));
    }
    if p.qzeros.shape != qz_want {
        return Err(format!("qzeros is {:?}, expected {qz_want:?}", p.qzeros.shape));
    }
    let group = cfg.group_size.unwrap_or(inp).min(inp.max(1));
    if groups != inp.div_ceil(group.max(1)) && !(cfg.desc_act && p.g_idx.is_some()) {
        return Err(format!(
            "scales has {groups} groups, but {inp} inputs in groups of {group} need {}",
            inp.div_ceil(group.max(1))
        ));
    }
    if let Some(g) = p.g_idx
        && (g.dtype != Dtype::I32 || g.shape.iter().product::<usize>() != inp)
    {
        return Err(format!("g_idx is {:?} {:?}, expected I32 [{inp}]", g.dtype, g.shape));
    }
    let format = if awq { "awq" } else { "gptq" };
    let tensors = ["qweight", "qzeros", "scales", "g_idx"]
        .iter()
        .filter(|s| ckpt.tensor(&format!("{module}.{s}")).is_ok())
        .map(|s| format!("{module}.{s}"))
        .collect();
    let stored = StoredScheme {
        format: format.into(),
        bits,
        granularity: "group".into(),
        group_size: Some(group),
        block: None,
        symmetric: cfg.sym,
        scale_dtype: format!("{:?}", p.scales.dtype),
        act_order: cfg.desc_act,
        short: short_form(&format!("int{bits}"), "group", Some(group), cfg.sym),
        bits_per_weight: None,
    };
    let layout = if awq { Layout::Awq(cfg) } else { Layout::Gptq(cfg) };
    Ok(Layer {
        name: format!("{module}.weight"),
        module: module.into(),
        shape: vec![out, inp],
        stored,
        tensors,
        layout,
        kind: FormatKind::Int(bits),
    })
}

/// Unpacks AWQ's interleaved nibbles of a `[rows, cols/8]` word matrix into
/// signed codes (u − 8), row-major `[rows, cols]` (the zero points; the
/// weight's codes are read in place through [`Codes::Awq`]).
fn unpack_awq(words: &[u32], rows: usize, cols: usize) -> Vec<i8> {
    let wpr = cols.div_ceil(8);
    let mut out = vec![0i8; rows * cols];
    for r in 0..rows {
        for j in 0..wpr {
            let w = words[r * wpr + j];
            for (i, &o) in AWQ_ORDER.iter().enumerate() {
                let c = 8 * j + o;
                if c < cols {
                    out[r * cols + c] = ((w >> (4 * i)) & 0xF) as i8 - 8;
                }
            }
        }
    }
    out
}

/// Reads a checked GPTQ / AWQ layer: a view of its stored codes (rows `[out]`
/// gathered while decoding), zero points and scales.
pub(super) fn grid<'a>(
    ckpt: &'a Checkpoint,
    layer: &Layer,
    cfg: &GptqConfig,
    awq: bool,
) -> Result<Grid<'a>, String> {
    let p = parts(ckpt, &layer.module)?;
    let (out, inp, bits) = (layer.shape[0], layer.shape[1], cfg.bits);
    let groups = p.scales.shape[0];
    let qz = bytes_to_words(ckpt.bytes(p.qzeros));
    // Zero points [groups, out], signed (u − 2^(b−1)) like the codes.
    let zeros = if awq { unpack_awq(&qz, groups, out) } else { unpack_rows(&qz, groups, out, bits) };
    let g_idx: Vec<u32> = match p.g_idx {
        Some(g) => ckpt
            .bytes(g)
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u32)
            .collect(),
        None => (0..inp).map(|c| (c / layer.stored.group_size.unwrap_or(inp).max(1)) as u32).collect(),
    };
    if let Some((k, &g)) = g_idx.iter().enumerate().find(|&(_, &g)| g as usize >= groups) {
        return Err(format!("g_idx[{k}] = {} is out of range (0..{groups})", g as i32));
    }
    // Codes stay where they are stored; each output row is gathered while decoding.
    let qw = ckpt.bytes(p.qweight);
    let codes = if awq { Codes::Awq(qw) } else { Codes::GptqColumns { bytes: qw, bits } };
    // g_idx = c / group (no act-order) is plain groups, which decode a run at a time.
    let group = layer.stored.group_size.unwrap_or(inp).max(1);
    let map =
        if groups == inp.div_ceil(group) && g_idx.iter().enumerate().all(|(c, &g)| g as usize == c / group) {
            SliceMap::Groups(group)
        } else {
            SliceMap::GIdx { g_idx, groups }
        };
    let scales_go = decode::decode(p.scales.dtype, ckpt.bytes(p.scales))?;
    let offset = if awq { 0 } else { cfg.zero_offset };
    let (mut scales, mut zps) = (vec![0.0; out * groups], vec![0; out * groups]);
    for g in 0..groups {
        for o in 0..out {
            scales[o * groups + g] = scales_go[g * out + o];
            zps[o * groups + g] = i32::from(zeros[g * out + o]) + offset;
        }
    }
    let params = slice_params(layer.kind, &scales, &zps, layer.stored.symmetric)?;
    let work = WorkDtype::of(p.scales.dtype);
    Ok(Grid { format: layer.kind, work, rows: out, cols: inp, codes, params, map, global: None })
}
