//! compressed-tensors layers (shared FORMATS.md §2, §3): `pack-quantized`
//! (`weight_packed` + `weight_shape`, zero points packed down each column),
//! and codes in `X.weight` (`int-quantized` I8, `float-quantized` /
//! `naive-quantized` F8) with a per-tensor, per-channel, per-group or block
//! `weight_scale`; also block-scaled FP8 stored with `weight_scale_inv`
//! (`quant_method: "fp8"`). Packed rows are decoded in place by
//! [`super::codes`], whose bit order is tested against the save's own
//! packing (`ct::bitpack`), so what quantscope writes it reads back.

use std::borrow::Cow;

use safetensors::Dtype;

use super::config::{CtWeights, Method};
use super::{Layer, Layout, StoredScheme, short_form};
use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::ct::bitpack::words_per_line;
use crate::ct::packed::{packed_codes, packed_zero_points};
use crate::decode;
use crate::dequant::{Codes, Grid, SliceMap};
use crate::format::{SliceParams, WorkDtype, e8m0_value, spec};
use crate::scheme::FormatKind;

/// Formats that have a name but no reader yet (the NVFP4 / MX work adds them).
/// Formats read here.
const READ: [&str; 7] = [
    "pack-quantized",
    "int-quantized",
    "float-quantized",
    "naive-quantized",
    "nvfp4-pack-quantized",
    "mxfp4-pack-quantized",
    "mxfp8-quantized",
];

/// How the scales cut the weight: granularity name, group or block size, map.
struct ScaleLayout {
    granularity: &'static str,
    group: Option<usize>,
    block: Option<[usize; 2]>,
    /// The scale grid as `[rows, cols]` (where zero points live too).
    grid: (usize, usize),
}

/// The expected scale layout from a config's strategy, or `None` to infer it.
fn scale_layout(
    scale: &TensorInfo,
    rows: usize,
    cols: usize,
    want: Option<&CtWeights>,
    block_hint: Option<[usize; 2]>,
) -> Result<ScaleLayout, String> {
    let s = &scale.shape;
    let numel: usize = s.iter().product();
    let make = |granularity, group, block, grid| ScaleLayout { granularity, group, block, grid };
    let tensor = || make("tensor", None, None, (1, 1));
    let channel = || make("channel", None, None, (rows, 1));
    let group = |g: usize| make("group", Some(g), None, (rows, cols.div_ceil(g)));
    let block = |[bh, bw]: [usize; 2]| {
        make("block", Some(bh), Some([bh, bw]), (rows.div_ceil(bh), cols.div_ceil(bw)))
    };
    let expected = match want.map(|w| (w.strategy.as_str(), w.group_size, w.block)) {
        Some(("tensor", ..)) => Some(tensor()),
        Some(("channel", ..)) => Some(channel()),
        Some(("group" | "tensor_group", Some(g), _)) => Some(group(g)),
        Some(("block", _, Some(b))) => Some(block(b)),
        Some((other, ..)) => return Err(format!("strategy '{other}' is not read")),
        None => block_hint.map(block),
    };
    let fits = |l: &ScaleLayout| {
        let (r, c) = l.grid;
        numel == r * c
            && (s.as_slice() == [r, c] || (r == 1 && c == 1) || (s.len() == 1 && c == 1 && s[0] == r))
    };
    if let Some(l) = expected {
        if fits(&l) {
            return Ok(l);
        }
        return Err(format!(
            "weight_scale has shape {s:?}, but {} scales of [{rows}, {cols}] need [{}, {}]",
            l.granularity, l.grid.0, l.grid.1
        ));
    }
    let candidates =
        [tensor(), channel(), group(cols.div_ceil(s.get(1).copied().unwrap_or(1).max(1))), block([128, 128])];
    candidates.into_iter().find(|l| fits(l) && (l.granularity != "group" || l.grid.1 > 1)).ok_or_else(|| {
        format!("weight_scale has shape {s:?}, which fits no per-tensor, channel, group or 128x128-block scale of [{rows}, {cols}]")
    })
}

/// The config group's weight scheme for `module` (None when there is no config).
fn config_weights(method: &Method, module: &str) -> Result<Option<CtWeights>, String> {
    match method {
        Method::CompressedTensors(c) => {
            let g = c
                .group_for(module)
                .ok_or("quantized, but no config group targets it (or it is in ignore)")?;
            let f = g.weights.format.as_str();
            if !READ.contains(&f) {
                return Err(format!("unknown compressed-tensors format '{f}'"));
            }
            Ok(Some(g.weights.clone()))
        }
        _ => Ok(None),
    }
}

/// Finds and checks a compressed-tensors (or `fp8` block) layer from its header.
pub(super) fn layer(ckpt: &Checkpoint, method: &Method, module: &str) -> Result<Layer, String> {
    let t = |s: &str| ckpt.tensor(&format!("{module}.{s}")).ok();
    let want = config_weights(method, module)?;
    let block_hint = match method {
        Method::Fp8Block { block } => Some(*block),
        _ if t("weight_scale_inv").is_some() => Some([128, 128]),
        _ => None,
    };
    if let Some(l) = micro_layer(ckpt, module, want.as_ref())? {
        return Ok(l);
    }
    let scale_name = if t("weight_scale_inv").is_some() { "weight_scale_inv" } else { "weight_scale" };
    let scale = t(scale_name).ok_or(format!("{scale_name} is missing"))?;
    if !matches!(scale.dtype, Dtype::F32 | Dtype::BF16 | Dtype::F16) {
        return Err(format!("{scale_name} is {:?}, expected F32, BF16 or F16", scale.dtype));
    }
    let (kind, rows, cols, layout) = if let Some(p) = t("weight_packed") {
        let (rows, cols, bits) = packed_shape(ckpt, module, p, want.as_ref())?;
        (FormatKind::Int(bits), rows, cols, Layout::Packed)
    } else {
        let w = t("weight").ok_or("weight_scale without weight or weight_packed")?;
        let kind = match w.dtype {
            Dtype::I8 => FormatKind::Int(want.as_ref().map_or(8, |w| w.bits)),
            Dtype::F8_E4M3 => FormatKind::E4M3,
            Dtype::F8_E5M2 => FormatKind::E5M2,
            d => return Err(format!("weight is {d:?}, expected I8 or F8 codes")),
        };
        let rows = w.shape.first().copied().unwrap_or(1);
        (kind, rows, w.shape.iter().skip(1).product(), Layout::Unpacked { scale: scale_name })
    };
    let sl = scale_layout(scale, rows, cols, want.as_ref(), block_hint)?;
    let zp = t("weight_zero_point");
    // quantscope's own asymmetric FP8: a real centre c per slice, stored like the scale.
    let offset = t("weight_offset");
    if let Some(o) = offset
        && (!kind.is_fp8() || o.shape != scale.shape || o.dtype != scale.dtype)
    {
        return Err(format!(
            "weight_offset is {:?} {:?}, expected {:?} {:?} on FP8 codes",
            o.dtype, o.shape, scale.dtype, scale.shape
        ));
    }
    let symmetric = zp.is_none() && offset.is_none();
    if want.as_ref().is_some_and(|w| !w.symmetric) && symmetric {
        return Err("asymmetric in the config, but weight_zero_point is missing".into());
    }
    if let Some(z) = zp {
        check_zero_points(z, &layout, kind, sl.grid)?;
    }
    let format = match (&want, &layout, kind) {
        (Some(w), ..) => w.format.clone(),
        (None, Layout::Packed, _) => "pack-quantized".into(),
        (None, _, _) if matches!(method, Method::Fp8Block { .. }) || scale_name == "weight_scale_inv" => {
            "fp8".into()
        }
        (None, _, FormatKind::Int(_)) => "int-quantized".into(),
        (None, ..) => "float-quantized".into(),
    };
    let bits = spec(kind).map_err(|e| e.to_string())?.bits;
    let mut tensors: Vec<String> =
        ["weight_packed", "weight_shape", "weight", scale_name, "weight_zero_point", "weight_offset"]
            .iter()
            .filter(|s| t(s).is_some())
            .map(|s| format!("{module}.{s}"))
            .collect();
    tensors.dedup();
    let size = sl.group.or(sl.block.map(|b| b[0]));
    let short = short_form(&kind.to_string(), sl.granularity, size, symmetric);
    let stored = StoredScheme {
        format,
        bits,
        granularity: sl.granularity.into(),
        group_size: sl.group.filter(|_| sl.block.is_none()),
        block: sl.block,
        symmetric,
        scale_dtype: format!("{:?}", scale.dtype),
        act_order: false,
        short,
        bits_per_weight: None,
    };
    Ok(Layer {
        name: format!("{module}.weight"),
        module: module.into(),
        shape: vec![rows, cols],
        stored,
        tensors,
        layout,
        kind,
    })
}

/// NVFP4 / MXFP4 (`weight_packed` U8, two E2M1 codes per byte) and MXFP8 (F8
/// `weight`), with E4M3 (NVFP4, plus an F32 `weight_global_scale`) or E8M0 (U8)
/// block scales; None when the layer is none of these.
fn micro_layer(ckpt: &Checkpoint, module: &str, want: Option<&CtWeights>) -> Result<Option<Layer>, String> {
    let t = |s: &str| ckpt.tensor(&format!("{module}.{s}")).ok();
    let Some(scale) = t("weight_scale") else { return Ok(None) };
    let packed = t("weight_packed").filter(|p| p.dtype == Dtype::U8 && p.shape.len() == 2);
    let weight = t("weight").filter(|w| w.dtype == Dtype::F8_E4M3 && w.shape.len() == 2);
    let (kind, ct) = match (scale.dtype, packed, weight) {
        (Dtype::F8_E4M3, Some(_), _) => (FormatKind::Nvfp4, "nvfp4-pack-quantized"),
        (Dtype::U8, Some(_), _) => (FormatKind::Mxfp4, "mxfp4-pack-quantized"),
        (Dtype::U8, None, Some(_)) => (FormatKind::Mxfp8, "mxfp8-quantized"),
        _ => return Ok(None),
    };
    let (rows, cols) = match (packed, weight) {
        (Some(p), _) => (p.shape[0], p.shape[1] * 2),
        (_, Some(w)) => (w.shape[0], w.shape[1]),
        _ => return Ok(None),
    };
    let g = kind.fixed_group().unwrap_or(16);
    if !cols.is_multiple_of(g) || scale.shape != [rows, cols / g] {
        return Err(format!(
            "weight_scale is {:?} {:?}, {kind} needs [{rows}, {}]",
            scale.dtype,
            scale.shape,
            cols / g
        ));
    }
    if kind == FormatKind::Nvfp4
        && !t("weight_global_scale")
            .is_some_and(|x| x.dtype == Dtype::F32 && x.shape.iter().product::<usize>() == 1)
    {
        return Err("weight_global_scale (F32 [1]) is missing".into());
    }
    let tensors = ["weight_packed", "weight", "weight_scale", "weight_global_scale"]
        .iter()
        .filter(|s| t(s).is_some())
        .map(|s| format!("{module}.{s}"))
        .collect();
    let scheme = crate::scheme::Scheme {
        format: kind,
        mapping: crate::scheme::Mapping::Symmetric,
        granularity: crate::scheme::Granularity::Group { size: g },
        calibration: crate::scheme::Calibration::MinMax,
    };
    let stored = StoredScheme {
        format: want.map_or_else(|| ct.to_string(), |w| w.format.clone()),
        bits: spec(kind).map_err(|e| e.to_string())?.bits,
        granularity: "group".into(),
        group_size: Some(g),
        block: None,
        symmetric: true,
        scale_dtype: format!("{:?}", scale.dtype),
        act_order: false,
        short: scheme.to_string(),
        bits_per_weight: None,
    };
    let name = format!("{module}.weight");
    Ok(Some(Layer {
        name,
        module: module.into(),
        shape: vec![rows, cols],
        stored,
        tensors,
        layout: Layout::Micro,
        kind,
    }))
}

/// A microscaled layer's codes (FP4 nibbles unpacked, low first), block scales
/// (E4M3 values or 2^(E − 127)) and NVFP4's global scale.
pub(super) fn micro_grid<'a>(ckpt: &'a Checkpoint, layer: &Layer) -> Result<Grid<'a>, String> {
    let (rows, cols) = (layer.shape[0], layer.shape[1]);
    let t = |s: &str| ckpt.tensor(&format!("{}.{s}", layer.module)).map_err(|e| e.to_string());
    let codes = match layer.kind {
        FormatKind::Mxfp8 => Codes::Bytes(Cow::Borrowed(ckpt.bytes(t("weight")?))),
        _ => Codes::Nibbles(ckpt.bytes(t("weight_packed")?)),
    };
    let scale = t("weight_scale")?;
    let scales: Vec<f32> = match scale.dtype {
        Dtype::U8 => ckpt.bytes(scale).iter().map(|&e| e8m0_value(e)).collect(),
        d => decode::decode(d, ckpt.bytes(scale)).map_err(|e| format!("weight_scale: {e}"))?,
    };
    let global = match layer.kind {
        FormatKind::Nvfp4 => {
            Some(f32::from_le_bytes(ckpt.bytes(t("weight_global_scale")?).try_into().unwrap_or_default()))
        }
        _ => None,
    };
    let reach = spec(layer.kind).map_err(|e| e.to_string())?.qmax;
    let params = scales
        .iter()
        .map(|&s| {
            let step = global.map_or(s, |g| s / g);
            SliceParams { scale: s, zero_point: 0, offset: 0.0, lo: -reach * step, hi: reach * step }
        })
        .collect::<Vec<_>>();
    let g = layer.kind.fixed_group().unwrap_or(16);
    codes.check(rows, cols)?;
    if params.len() != rows * (cols / g) {
        return Err(format!("{} scales for [{rows}, {cols}]", params.len()));
    }
    // R′ of these formats is BF16 whatever the model's dtype (docs/numerics.md).
    Ok(Grid {
        format: layer.kind,
        work: WorkDtype::BF16,
        rows,
        cols,
        codes,
        params,
        map: SliceMap::Groups(g),
        global,
    })
}

/// `[rows, cols]` from `weight_shape`, and the bits, checked against `weight_packed`.
fn packed_shape(
    ckpt: &Checkpoint,
    module: &str,
    p: &TensorInfo,
    want: Option<&CtWeights>,
) -> Result<(usize, usize, u8), String> {
    let shape = ckpt.tensor(&format!("{module}.weight_shape")).map_err(|_| "weight_shape is missing")?;
    let dims: Vec<i64> = ckpt
        .bytes(shape)
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let (rows, cols) = match (shape.dtype, dims.as_slice()) {
        (Dtype::I64 | Dtype::I32, _) if shape.dtype == Dtype::I32 => {
            return Err("weight_shape is I32, expected I64".into());
        }
        (Dtype::I64, [r, c]) if *r >= 0 && *c >= 0 => (*r as usize, *c as usize),
        _ => return Err(format!("weight_shape is {:?} {dims:?}, expected I64 [out, in]", shape.dtype)),
    };
    if p.dtype != Dtype::I32 || p.shape.len() != 2 {
        return Err(format!("weight_packed is {:?} {:?}, expected I32 [out, words]", p.dtype, p.shape));
    }
    let bits = match want {
        Some(w) => w.bits,
        // Words per row grow with the width, so at most one width fits.
        None => (1..=8u8).find(|&b| words_per_line(cols, b) == p.shape[1]).unwrap_or(0),
    };
    if !(2..=8).contains(&bits) || p.shape != [rows, words_per_line(cols, bits)] {
        return Err(format!(
            "weight_packed is I32 {:?}, which does not match weight_shape [{rows}, {cols}] at {bits} bits",
            p.shape
        ));
    }
    Ok((rows, cols, bits))
}

fn check_zero_points(
    z: &TensorInfo,
    layout: &Layout,
    kind: FormatKind,
    (zr, zc): (usize, usize),
) -> Result<(), String> {
    let FormatKind::Int(bits) = kind else {
        return Err("weight_zero_point on an FP8 layer (asymmetric FP8 has no zero point)".into());
    };
    let want = match layout {
        Layout::Packed => (Dtype::I32, vec![words_per_line(zr, bits), zc]),
        _ => (Dtype::I8, vec![zr, zc]),
    };
    let per_tensor = zr * zc == 1 && z.shape.iter().product::<usize>() == 1;
    if z.dtype != want.0 || (z.shape != want.1 && !per_tensor) {
        return Err(format!(
            "weight_zero_point is {:?} {:?}, expected {:?} {:?}",
            z.dtype, z.shape, want.0, want.1
        ));
    }
    Ok(())
}

/// Per-slice params from decoded scales and zero points. lo/hi (what the diff
/// counts as clipped) follow the engine's metric range: ±S·(Qmax − Qmin)/2
/// (= ±amax) for symmetric INT, ±fmax·S for FP8, [S·(Qmin − Z), S·(Qmax − Z)]
/// for asymmetric INT.
pub(super) fn slice_params(
    kind: FormatKind,
    scales: &[f32],
    zps: &[i32],
    symmetric: bool,
) -> Result<Vec<SliceParams>, String> {
    let f = spec(kind).map_err(|e| e.to_string())?;
    let half = (f.qmax - f.qmin) / 2.0;
    Ok(scales
        .iter()
        .enumerate()
        .map(|(i, &scale)| {
            let z = zps.get(i).copied().unwrap_or(0);
            let (lo, hi) = if f.is_float || (symmetric && z == 0) {
                (-scale * half, scale * half)
            } else {
                (scale * (f.qmin - z as f32), scale * (f.qmax - z as f32))
            };
            SliceParams { scale, zero_point: z, offset: 0.0, lo: lo.min(hi), hi: lo.max(hi) }
        })
        .collect())
}

/// Reads a checked layer's codes and parameters.
pub(super) fn grid<'a>(ckpt: &'a Checkpoint, layer: &Layer) -> Result<Grid<'a>, String> {
    let (rows, cols) = (layer.shape[0], layer.shape[1]);
    let st = &layer.stored;
    let scale_name = match layer.layout {
        Layout::Unpacked { scale } => scale,
        _ => "weight_scale",
    };
    let t = |s: &str| ckpt.tensor(&format!("{}.{s}", layer.module)).map_err(|e| e.to_string());
    let scale = t(scale_name)?;
    let map = match (st.granularity.as_str(), st.group_size, st.block) {
        ("tensor", ..) => SliceMap::Tensor,
        ("channel", ..) => SliceMap::Rows,
        (_, _, Some([bh, bw])) => SliceMap::Blocks { bh, bw },
        (_, Some(g), _) => SliceMap::Groups(g),
        (g, ..) => return Err(format!("granularity {g} has no size")),
    };
    // The scale grid, where packed zero points live too.
    let zgrid = match map {
        SliceMap::Tensor => (1, 1),
        SliceMap::Blocks { bh, bw } => (rows.div_ceil(bh), cols.div_ceil(bw)),
        ref m => (rows, m.slices(rows, cols) / rows.max(1)),
    };
    let base = format!("{}.weight", layer.module);
    let (codes, zps) = if layer.layout == Layout::Packed {
        let zps = if st.symmetric { Vec::new() } else { packed_zero_points(ckpt, &base, st.bits, zgrid)? };
        (packed_codes(ckpt, &base, (rows, cols), st.bits)?, zps)
    } else {
        let zps = if st.symmetric || layer.kind.is_fp8() {
            Vec::new()
        } else {
            ckpt.bytes(t("weight_zero_point")?).iter().map(|&b| i32::from(i8::from_le_bytes([b]))).collect()
        };
        (Codes::Bytes(Cow::Borrowed(ckpt.bytes(t("weight")?))), zps)
    };
    let scales = decode::decode(scale.dtype, ckpt.bytes(scale)).map_err(|e| format!("{scale_name}: {e}"))?;
    let mut params = slice_params(layer.kind, &scales, &zps, st.symmetric)?;
    if layer.kind.is_fp8() && !st.symmetric {
        let o = t("weight_offset")?;
        let offsets = decode::decode(o.dtype, ckpt.bytes(o)).map_err(|e| format!("weight_offset: {e}"))?;
        for (p, c) in params.iter_mut().zip(offsets) {
            (p.offset, p.lo, p.hi) = (c, p.lo + c, p.hi + c);
        }
    }
    codes.check(rows, cols)?;
    if params.len() != map.slices(rows, cols) {
        return Err(format!("{} scales for {} slices", params.len(), map.slices(rows, cols)));
    }
    Ok(Grid {
        format: layer.kind,
        work: WorkDtype::of(scale.dtype),
        rows,
        cols,
        codes,
        params,
        map,
        global: None,
    })
}
