//! The INT and FP8 arithmetic against compressed-tensors' own output
//! (`data/formats/`, copied from the team's reference vectors; see its README).
//! For every file the input is quantized with the matching scheme in the file's
//! working dtype D, and every code, scale byte, zero point and R′ element is
//! compared with what llm-compressor wrote, bit for bit, edge rows included.
//! The second test does the same for FP8 blocks, NVFP4, MXFP4 and MXFP8 (block
//! scales as E4M3 / E8M0 bytes, the NVFP4 global scale, R′ in BF16).

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;

use quantscope_engine::format::{
    Fp8Format, IntFormat, MicroFormat, MicroKind, NumberFormat, SliceParams, WorkDtype, e8m0_byte,
};
use quantscope_engine::{Options, Scheme, analyze};
use safetensors::{Dtype, SafeTensors};

const ROWS: usize = 64;
const COLS: usize = 256;

fn read(name: &str) -> Vec<u8> {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/formats").join(format!("{name}.safetensors"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A float tensor (F32 or BF16) as f32 values.
fn floats(st: &SafeTensors, name: &str) -> (Dtype, Vec<f32>) {
    let t = st.tensor(name).unwrap();
    let b = t.data();
    let v = match t.dtype() {
        Dtype::F32 => b.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::BF16 => {
            b.chunks(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)).collect()
        }
        d => panic!("{name}: unexpected {d:?}"),
    };
    (t.dtype(), v)
}

/// f32 values (already in D) as D's bytes.
fn d_bytes(d: WorkDtype, xs: &[f32]) -> Vec<u8> {
    match d {
        WorkDtype::F32 => xs.iter().flat_map(|x| x.to_le_bytes()).collect(),
        _ => xs.iter().flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes()).collect(),
    }
}

fn i32s(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<u32>) {
    let t = st.tensor(name).unwrap();
    assert_eq!(t.dtype(), Dtype::I32, "{name}");
    (t.shape().to_vec(), t.data().chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect())
}

/// Element i of a little-endian bit stream of b-bit fields, minus the 2^(b−1) bias.
fn field(words: &[u32], i: usize, b: usize) -> i32 {
    let mut u = 0u32;
    for k in 0..b {
        let bit = i * b + k;
        u |= ((words[bit / 32] >> (bit % 32)) & 1) << k;
    }
    u as i32 - (1 << (b - 1))
}

/// The file's INT codes, row-major `[64, 256]`: unpacked from `weight_packed`
/// (one bit stream per row) or read from an I8 `weight`.
fn int_codes(st: &SafeTensors, bits: usize) -> Vec<i32> {
    if let Ok(t) = st.tensor("weight") {
        assert_eq!(t.dtype(), Dtype::I8);
        return t.data().iter().map(|&b| i32::from(b as i8)).collect();
    }
    let (shape, words) = i32s(st, "weight_packed");
    assert_eq!(shape, [ROWS, (COLS * bits).div_ceil(32)]);
    words.chunks(shape[1]).flat_map(|row| (0..COLS).map(move |i| field(row, i, bits))).collect()
}

/// The file's zero points `[64, groups]`, packed down each column (dim 0).
fn zero_points(st: &SafeTensors, bits: usize, groups: usize) -> Option<Vec<i32>> {
    st.tensor("weight_zero_point").ok()?;
    let (shape, words) = i32s(st, "weight_zero_point");
    assert_eq!(shape, [(ROWS * bits).div_ceil(32), groups]);
    let column = |g: usize| (0..shape[0]).map(|w| words[w * groups + g]).collect::<Vec<_>>();
    let cols: Vec<Vec<i32>> =
        (0..groups).map(|g| (0..ROWS).map(|r| field(&column(g), r, bits)).collect()).collect();
    Some((0..ROWS * groups).map(|k| cols[k % groups][k / groups]).collect())
}

struct Case {
    file: &'static str,
    scheme: &'static str,
}

const CASES: &[Case] = &[
    Case { file: "w8a16", scheme: "int8:group128:minmax:sym" },
    Case { file: "w8a16_asym", scheme: "int8:group128:minmax:asym" },
    Case { file: "w4a16", scheme: "int4:group128:minmax:sym" },
    Case { file: "w4a16_asym", scheme: "int4:group128:minmax:asym" },
    Case { file: "w4a16_channel", scheme: "int4:channel:minmax:sym" },
    Case { file: "w4a16_asym_channel", scheme: "int4:channel:minmax:asym" },
    Case { file: "w8a8", scheme: "int8:channel:minmax:sym" },
    Case { file: "fp8_dynamic", scheme: "e4m3:channel:minmax:sym" },
    Case { file: "fp8_weight_only", scheme: "e4m3:channel:minmax:sym" },
];

/// Counts of identical (codes, scales, zero points, R′) and their totals.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    codes: [usize; 2],
    scales: [usize; 2],
    zero_points: [usize; 2],
    dequantized: [usize; 2],
}

fn same_count<T: PartialEq>(a: &[T], b: &[T]) -> [usize; 2] {
    assert_eq!(a.len(), b.len());
    [a.iter().zip(b).filter(|(x, y)| x == y).count(), a.len()]
}

fn check(case: &Case, suffix: &str) -> Tally {
    let input = read("input_weights");
    let input = SafeTensors::deserialize(&input).unwrap();
    let (dtype, x) = floats(&input, &format!("weight_{suffix}"));
    let d = WorkDtype::of(dtype);
    let bytes = read(&format!("{}_{suffix}", case.file));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let scheme: Scheme = case.scheme.parse().unwrap();
    let opts = Options { keep_dequantized: true, work: d, ..Options::default() };
    let r = analyze(&x, &[ROWS, COLS], &scheme, &opts).unwrap();
    let groups = r.params.len() / ROWS;
    let slice = |k: usize| &r.params[(k / COLS) * groups + (k % COLS) / (COLS / groups)];
    let mut t = Tally::default();
    let (sd, scales) = floats(&st, "weight_scale");
    assert_eq!(sd, dtype);
    let ours: Vec<f32> = r.params.iter().map(|p| p.scale).collect();
    t.scales = same_count(&d_bytes(d, &ours), &d_bytes(d, &scales));
    let deq = r.dequantized.unwrap();
    t.dequantized = same_count(&d_bytes(d, &deq), &d_bytes(d, &floats(&st, "dequantized").1));
    if case.scheme.starts_with("e4m3") {
        let f = Fp8Format::E4M3.in_work(d);
        let ours: Vec<u8> = x.iter().enumerate().map(|(k, &v)| f.quantize(v, slice(k))).collect();
        t.codes = same_count(&ours, st.tensor("weight").unwrap().data());
        check_fake_quant(f, &x, &deq, slice);
    } else {
        let bits = usize::from(scheme.format.to_string()[3..].parse::<u8>().unwrap());
        let f = IntFormat::new(bits as u8).unwrap().in_work(d);
        let ours: Vec<i32> = x.iter().enumerate().map(|(k, &v)| f.quantize(v, slice(k))).collect();
        t.codes = same_count(&ours, &int_codes(&st, bits));
        let zps: Vec<i32> = r.params.iter().map(|p| p.zero_point).collect();
        t.zero_points = match zero_points(&st, bits, groups) {
            Some(z) => same_count(&zps, &z),
            None => [0, 0],
        };
        check_fake_quant(f, &x, &deq, slice);
    }
    t
}

/// R′ from the codes equals the fake-quant `analyze` kept (its vector path).
fn check_fake_quant<'a, F: NumberFormat>(
    f: F,
    x: &[f32],
    deq: &[f32],
    slice: impl Fn(usize) -> &'a SliceParams,
) {
    for (k, (&v, &want)) in x.iter().zip(deq).enumerate() {
        let p = slice(k);
        assert_eq!(f.dequantize(f.quantize(v, p), p).to_bits(), want.to_bits(), "element {k}");
    }
}

#[test]
fn int_and_fp8_match_compressed_tensors_bit_for_bit() {
    let mut failures = Vec::new();
    for case in CASES {
        for suffix in ["f32", "bf16"] {
            let t = check(case, suffix);
            println!(
                "{}_{suffix}: codes {}/{}, scale bytes {}/{}, zero points {}/{}, R' bytes {}/{}",
                case.file,
                t.codes[0],
                t.codes[1],
                t.scales[0],
                t.scales[1],
                t.zero_points[0],
                t.zero_points[1],
                t.dequantized[0],
                t.dequantized[1]
            );
            let all = |c: [usize; 2]| c[0] == c[1];
            if !(all(t.codes) && all(t.scales) && all(t.zero_points) && all(t.dequantized)) {
                failures.push(format!("{}_{suffix}", case.file));
            }
        }
    }
    assert!(failures.is_empty(), "differ from compressed-tensors: {failures:?}");
}

/// The microscaling and block formats: file, scheme, element format.
const MICRO: &[(&str, &str, Option<MicroKind>)] = &[
    ("fp8_block", "e4m3:block128:minmax", None),
    ("nvfp4a16", "nvfp4", Some(MicroKind::Nvfp4)),
    ("mxfp4a16", "mxfp4", Some(MicroKind::Mxfp4)),
    ("mxfp8a16", "mxfp8", Some(MicroKind::Mxfp8)),
];

/// BF16 bit patterns of f32 values already in BF16.
fn bf16_bits(xs: &[f32]) -> Vec<u16> {
    xs.iter().map(|x| (x.to_bits() >> 16) as u16).collect()
}

/// Codes of the file: F8 bytes of `weight`, or nibbles of `weight_packed`, low first.
fn micro_codes(st: &SafeTensors) -> Vec<u8> {
    if let Ok(t) = st.tensor("weight") {
        return t.data().to_vec();
    }
    let t = st.tensor("weight_packed").unwrap();
    assert_eq!((t.dtype(), t.shape()), (Dtype::U8, &[ROWS, COLS / 2][..]));
    t.data().iter().flat_map(|b| [b & 0x0F, b >> 4]).collect()
}

fn check_micro(file: &str, scheme: &str, kind: Option<MicroKind>, suffix: &str) -> Tally {
    let input = read("input_weights");
    let input = SafeTensors::deserialize(&input).unwrap();
    let (dtype, x) = floats(&input, &format!("weight_{suffix}"));
    let d = WorkDtype::of(dtype);
    let bytes = read(&format!("{file}_{suffix}"));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let scheme: Scheme = scheme.parse().unwrap();
    let opts = Options { keep_dequantized: true, work: d, ..Options::default() };
    let r = analyze(&x, &[ROWS, COLS], &scheme, &opts).unwrap();
    let deq = r.dequantized.as_deref().unwrap();
    let mut t = Tally::default();
    let scale = st.tensor("weight_scale").unwrap();
    let Some(kind) = kind else {
        // FP8 blocks: one scale per 128×128 tile, in D.
        let slice = |k: usize| &r.params[(k / COLS / 128) * 2 + (k % COLS) / 128];
        let f = Fp8Format::E4M3.in_work(d);
        let ours: Vec<f32> = r.params.iter().map(|p| p.scale).collect();
        t.scales = same_count(&d_bytes(d, &ours), scale.data());
        let codes: Vec<u8> = x.iter().enumerate().map(|(k, &v)| f.quantize(v, slice(k))).collect();
        t.codes = same_count(&codes, &micro_codes(&st));
        t.dequantized = same_count(&d_bytes(d, deq), &d_bytes(d, &floats(&st, "dequantized").1));
        check_fake_quant(f, &x, deq, slice);
        return t;
    };
    let mut f = MicroFormat::new(kind, d);
    if let Ok(g) = st.tensor("weight_global_scale") {
        let gs = f32::from_le_bytes(g.data().try_into().unwrap());
        assert_eq!(r.global_scale.map(f32::to_bits), Some(gs.to_bits()), "{file}_{suffix}: global scale");
        f = f.with_global(gs);
    }
    let group = COLS / (r.params.len() / ROWS);
    let slice = |k: usize| &r.params[k / group];
    let ours: Vec<u8> = match kind {
        MicroKind::Nvfp4 => r.params.iter().map(|p| Fp8Format::E4M3.encode(p.scale)).collect(),
        _ => r.params.iter().map(|p| e8m0_byte(p.scale)).collect(),
    };
    t.scales = same_count(&ours, scale.data());
    let codes: Vec<u8> = x.iter().enumerate().map(|(k, &v)| f.quantize(v, slice(k))).collect();
    t.codes = same_count(&codes, &micro_codes(&st));
    // compressed-tensors returns R′ in BF16 for these formats.
    t.dequantized = same_count(&bf16_bits(deq), &bf16_bits(&floats(&st, "dequantized").1));
    check_fake_quant(f, &x, deq, slice);
    t
}

#[test]
fn blocks_nvfp4_and_mx_match_compressed_tensors_bit_for_bit() {
    let mut failures = Vec::new();
    for &(file, scheme, kind) in MICRO {
        for suffix in ["f32", "bf16"] {
            let t = check_micro(file, scheme, kind, suffix);
            println!(
                "{file}_{suffix}: codes {}/{}, scale bytes {}/{}, R' {}/{}",
                t.codes[0], t.codes[1], t.scales[0], t.scales[1], t.dequantized[0], t.dequantized[1]
            );
            let all = |c: [usize; 2]| c[0] == c[1];
            if !(all(t.codes) && all(t.scales) && all(t.dequantized)) {
                failures.push(format!("{file}_{suffix}"));
            }
        }
    }
    assert!(failures.is_empty(), "differ from compressed-tensors: {failures:?}");
}
