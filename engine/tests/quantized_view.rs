//! The app's view of a quantized checkpoint (`quantized::view`), on quantscope's
//! own saves: the published R′ of a save must measure exactly what the engine
//! measured when it quantized (per layer and per slice), and a stored layer's
//! code counts must be the codes the save wrote.
#![allow(clippy::unwrap_used)] // test setup: a panic is the failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use quantscope_engine::export::{self, ExportMode, ExportOptions};
use quantscope_engine::quantized::QuantizedModel;
use quantscope_engine::quantized::view::{published, stored_view};
use quantscope_engine::recipe::Resolved;
use quantscope_engine::{Checkpoint, Options, Scheme, analyze, diff};

const ROWS: usize = 48;
const COLS: usize = 256;

/// Weight-like values with a few outlier rows, so slices differ.
fn weights() -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..ROWS * COLS)
        .map(|k| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let row = k / COLS;
            u * 0.05 * if row % 11 == 3 { 8.0 } else { 1.0 } + 0.002
        })
        .collect()
}

fn original(dir: &Path) -> PathBuf {
    let w = weights();
    let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![ROWS, COLS], &bytes).unwrap();
    let path = dir.join("orig.safetensors");
    safetensors::serialize_to_file([("proj.weight", view)], None, &path).unwrap();
    path
}

fn save(model: &Path, scheme: &Scheme, out: &Path) {
    let ckpt = Checkpoint::open(model).unwrap();
    let recipe = Resolved { scheme: *scheme, layers: BTreeMap::new() };
    let decisions = export::plan(ckpt.tensors(), &recipe, &|_| false);
    let opts = ExportOptions { mode: ExportMode::Packed, ..ExportOptions::default() };
    export::export(&ckpt, &decisions, out, &opts, &|_, _| {}, &AtomicBool::new(false)).unwrap();
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-30)
}

const SCHEMES: [&str; 5] =
    ["int4:group64:minmax:asym", "int8:channel:minmax", "int4:group32:mse", "e4m3:channel:minmax", "nvfp4"];

/// Every scheme's save of the original, opened as a quantized checkpoint.
fn saves(dir: &Path) -> Vec<(&'static str, Scheme, QuantizedModel)> {
    let model = original(dir);
    SCHEMES
        .iter()
        .map(|&short| {
            let scheme: Scheme = short.parse().unwrap();
            let out = dir.join(short.replace(':', "_"));
            save(&model, &scheme, &out);
            (short, scheme, QuantizedModel::open(&out).unwrap())
        })
        .collect()
}

#[test]
fn a_saves_published_error_is_the_error_the_engine_measured() {
    let dir = tempfile::tempdir().unwrap();
    let values = weights();
    for (short, scheme, q) in saves(dir.path()) {
        let layer = q.layer("proj.weight").unwrap();
        let p = published(&q, layer, &values, 64, 32).unwrap();
        let own = analyze(&values, &[ROWS, COLS], &scheme, &Options::default()).unwrap();
        let (a, b) = (&p.result.metrics, &own.metrics);
        assert!(close(a.mse, b.mse) && close(a.sqnr_db, b.sqnr_db), "{short}: {a:?} vs {b:?}");
        assert_eq!(a.count, (ROWS * COLS) as u64, "{short}");
        // The CLI's `diff` gives the same numbers.
        assert_eq!(diff::published_metrics(&q, layer, &values).unwrap(), *a, "{short}");
        assert_eq!(p.result.slice_metrics.len(), own.slice_metrics.len(), "{short}");
        for (k, (x, y)) in p.result.slice_metrics.iter().zip(&own.slice_metrics).enumerate() {
            assert!(close(x.mse, y.mse) && x.count == y.count, "{short} slice {k}: {x:?} vs {y:?}");
        }
        for (k, (x, y)) in p.result.params.iter().zip(&own.params).enumerate() {
            assert_eq!(x.scale, y.scale, "{short} slice {k}");
        }
        let h = p.dequantized_histogram.as_ref().unwrap();
        assert_eq!(h.counts.iter().sum::<u64>(), (ROWS * COLS) as u64, "{short}");
        assert_eq!(
            p.result.error_histogram.as_ref().unwrap().counts.iter().sum::<u64>(),
            (ROWS * COLS) as u64
        );
    }
}

#[test]
fn stored_code_counts_are_the_codes_the_save_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let values = weights();
    for (short, scheme, q) in saves(dir.path()) {
        let v = stored_view(&q, q.layer("proj.weight").unwrap(), 50).unwrap();
        let total: u64 = v.codes.iter().map(|c| c.count).sum();
        assert_eq!(total, (ROWS * COLS) as u64, "{short}");
        assert!(v.codes_used() >= 2 && v.codes_used() <= v.codes.len(), "{short}");
        if scheme.format.is_fp8() || short == "nvfp4" {
            continue;
        }
        // INT: the code of each element, recomputed from R and the save's (S, Z).
        let own = analyze(&values, &[ROWS, COLS], &scheme, &Options::default()).unwrap();
        let per_row = own.params.len() / ROWS;
        let group = COLS / per_row;
        let mut expect: BTreeMap<i32, u64> = BTreeMap::new();
        for (k, &x) in values.iter().enumerate() {
            let p = &own.params[(k / COLS) * per_row + (k % COLS) / group];
            let half = match scheme.format {
                quantscope_engine::FormatKind::Int(b) => 1i32 << (b - 1),
                _ => unreachable!("INT schemes only here"),
            };
            let q = ((x / p.scale).round() as i32 + p.zero_point).clamp(-half, half - 1);
            *expect.entry(q).or_default() += 1;
        }
        let got: BTreeMap<i32, u64> =
            v.codes.iter().filter(|c| c.count > 0).map(|c| (c.value as i32, c.count)).collect();
        // Ties may round either way between the two computations; nothing else may differ.
        let moved: u64 = expect.iter().map(|(q, n)| n.abs_diff(got.get(q).copied().unwrap_or(0))).sum();
        assert!(moved * 1000 <= (ROWS * COLS) as u64, "{short}: {moved} codes differ: {expect:?} vs {got:?}");
    }
}
