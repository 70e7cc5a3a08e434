//! Read-back: re-opens the written model and checks every tensor (copies byte
//! for byte, quantized tensors' R′ digest by digest) before OUT appears.

use std::path::Path;

use std::borrow::Cow;

use safetensors::Dtype;

use super::pack::chunk_digests;
use super::plan::Decision;
use super::write::Digests;
use super::{ExportMode, ExportOptions};
use crate::checkpoint::{Checkpoint, TensorInfo};
use crate::ct::format::input_dim;
use crate::ct::layout::scale_shape;
use crate::ct::packed::unpack_pack_quantized;
use crate::decode;
use crate::dequant::{self, Codes, Grid, SliceMap};
use crate::error::{Error, Result};
use crate::format::{
    NumberFormat, OffsetKind, SliceParams, WithFormat, WorkDtype, dispatch_in, e8m0_value, spec,
};
use crate::scheme::{Mapping, Scheme};

/// Re-opens the output and checks each quantized tensor's R′ against the digests
/// taken while writing. Returns the number of tensors checked.
pub(super) fn verify(
    ckpt: &Checkpoint,
    decisions: &[Decision],
    tmp: &Path,
    opts: &ExportOptions,
    digests: &Digests,
) -> Result<usize> {
    let mode = opts.mode;
    let out = Checkpoint::open(tmp)?;
    let mut checked = 0;
    for (t, d) in ckpt.tensors().iter().zip(decisions) {
        let fail = |reason: String| Error::Verify { file: tmp.to_path_buf(), tensor: t.name.clone(), reason };
        let Decision::Quantize(s) = d else {
            let o = out.tensor(&t.name)?;
            let expected = match opts.replaced.get(&t.name) {
                Some(v) => Cow::Owned(super::pack::encode_floats(t.dtype, v, &t.name)?),
                None => Cow::Borrowed(ckpt.bytes(t)),
            };
            if out.bytes(o) != expected.as_ref() {
                return Err(fail("copied bytes differ from the source".into()));
            }
            continue;
        };
        let deq = match mode {
            ExportMode::FakeQuant => out.load_f32(&t.name)?,
            ExportMode::Packed => read_packed(&out, t, s)?,
        };
        if digests.get(&t.name) != Some(&chunk_digests(&deq)) {
            return Err(fail("the dequantized tensor read back differs from the engine's R'".into()));
        }
        checked += 1;
        ckpt.release(t);
        for suffix in ["", "_packed", "_shape", "_scale", "_zero_point", "_offset", "_global_scale"] {
            if let Ok(o) = out.tensor(&format!("{}{suffix}", t.name)) {
                out.release(o);
            }
        }
    }
    Ok(checked)
}

/// R′ from a saved packed tensor: codes, scale, zero point or offset, read back.
pub fn read_packed(out: &Checkpoint, t: &TensorInfo, s: &Scheme) -> Result<Vec<f32>> {
    struct Run<'a>(&'a Checkpoint, &'a TensorInfo, &'a Scheme);
    impl WithFormat for Run<'_> {
        type Out = Result<Vec<f32>>;
        fn run<F: NumberFormat>(self, f: F) -> Result<Vec<f32>> {
            read_packed_with(f, self.0, self.1, self.2)
        }
    }
    let read_back =
        |reason: String| Error::ReadBack { file: out.path.clone(), tensor: t.name.clone(), reason };
    dispatch_in(s.format, WorkDtype::of(t.dtype), Run(out, t, s)).and_then(|r| r).map_err(|e| match e {
        e @ Error::ReadBack { .. } => e,
        e => read_back(e.to_string()),
    })
}

fn read_packed_with<F: NumberFormat>(
    fmt: F,
    out: &Checkpoint,
    t: &TensorInfo,
    s: &Scheme,
) -> Result<Vec<f32>> {
    let fail = |reason: String| Error::ReadBack { file: out.path.clone(), tensor: t.name.clone(), reason };
    let fmt = match out.tensor(&format!("{}_global_scale", t.name)) {
        Ok(g) if g.dtype == Dtype::F32 && g.shape == [1] => {
            fmt.with_global(f32::from_le_bytes(out.bytes(g).try_into().unwrap_or_default()))
        }
        Ok(g) => return Err(fail(format!("_global_scale stored as {:?} {:?}", g.dtype, g.shape))),
        Err(_) => fmt,
    };
    let packed = out.tensor(&format!("{}_packed", t.name)).ok();
    let (codes, zps) = if let Some(p) = packed.filter(|p| p.dtype == Dtype::U8) {
        (Cow::Owned(read_nibbles(t, p, out.bytes(p)).map_err(&fail)?), Vec::new())
    } else if packed.is_some() {
        read_pack_quantized(out, t, s).map_err(&fail)?
    } else {
        let w = out.tensor(&t.name)?;
        if w.shape != t.shape || w.dtype != fmt.code_dtype() {
            let want = fmt.code_dtype();
            return Err(fail(format!(
                "stored as {:?} {:?}, expected {want:?} {:?}",
                w.dtype, w.shape, t.shape
            )));
        }
        let zps = match (s.mapping, fmt.offset_kind()) {
            (Mapping::Asymmetric, OffsetKind::ZeroPoint) => {
                let z = out.tensor(&format!("{}_zero_point", t.name))?;
                out.bytes(z).iter().map(|&b| i32::from(i8::from_le_bytes([b]))).collect()
            }
            _ => Vec::new(),
        };
        (Cow::Borrowed(out.bytes(w)), zps)
    };
    let floats = |suffix: &str| -> Result<Vec<f32>> {
        let i = out.tensor(&format!("{}{suffix}", t.name))?;
        if i.shape != scale_shape(&t.shape, s.granularity) {
            return Err(fail(format!("{suffix} has shape {:?}", i.shape)));
        }
        match i.dtype {
            // E8M0 exponents (MX block scales).
            Dtype::U8 => Ok(out.bytes(i).iter().map(|&e| e8m0_value(e)).collect()),
            d => decode::decode(d, out.bytes(i)).map_err(|r| fail(format!("{suffix}: {r}"))),
        }
    };
    let scales = floats("_scale")?;
    let n = scales.len();
    let zps = if zps.is_empty() { vec![0; n] } else { zps };
    let offsets = match (s.mapping, fmt.offset_kind()) {
        (Mapping::Asymmetric, OffsetKind::Real) => floats("_offset")?,
        _ => vec![0.0; n],
    };
    if zps.len() != n || offsets.len() != n {
        return Err(fail("scale, zero point and offset counts differ".into()));
    }
    let params: Vec<SliceParams> = (0..n)
        .map(|i| SliceParams { scale: scales[i], zero_point: zps[i], offset: offsets[i], lo: 0.0, hi: 0.0 })
        .collect();
    let rows = t.shape.first().copied().unwrap_or(1);
    let grid = Grid {
        format: s.format,
        work: fmt.work(),
        rows,
        cols: codes.len() / rows.max(1),
        codes: Codes::Bytes(codes),
        params,
        map: SliceMap::of(s.granularity),
        global: fmt.global(),
    };
    dequant::dequantize(&grid)
}

/// FP4 codes from `_packed` U8 `[rows, ceil(cols/2)]`, low nibble first.
fn read_nibbles(t: &TensorInfo, p: &TensorInfo, bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let (rows, cols) = (t.shape[0], input_dim(&t.shape));
    if p.shape != [rows, cols.div_ceil(2)] {
        return Err(format!("_packed stored as {:?} {:?}", p.dtype, p.shape));
    }
    Ok(crate::ct::bitpack::unpack_nibbles(bytes, cols))
}

/// The codes (as stored bytes) and zero points of a `pack-quantized` tensor,
/// after checking `weight_shape`; the unpacking is the reader's
/// (`ct::packed::unpack_pack_quantized`).
fn read_pack_quantized(
    out: &Checkpoint,
    t: &TensorInfo,
    s: &Scheme,
) -> std::result::Result<(Cow<'static, [u8]>, Vec<i32>), String> {
    let bits = spec(s.format).map_err(|e| e.to_string())?.bits;
    let (rows, cols) = (t.shape[0], input_dim(&t.shape));
    let shape = out.tensor(&format!("{}_shape", t.name)).map_err(|e| e.to_string())?;
    let dims: Vec<i64> = out
        .bytes(shape)
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    if shape.dtype != Dtype::I64 || dims.iter().map(|&d| d as usize).ne(t.shape.iter().copied()) {
        return Err(format!("_shape is {dims:?}, expected {:?}", t.shape));
    }
    let zp = match s.mapping {
        Mapping::Symmetric => None,
        Mapping::Asymmetric => {
            let ss = scale_shape(&t.shape, s.granularity);
            Some((ss[0], ss[1..].iter().product::<usize>()))
        }
    };
    let (codes, zps) = unpack_pack_quantized(out, &t.name, (rows, cols), bits, zp)?;
    Ok((Cow::Owned(codes), zps))
}
