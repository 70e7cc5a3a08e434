//! Calibration on the real MiniLM checkpoint (skipped when it is not fetched,
//! unless `QUANTSCOPE_REQUIRE_MINILM` is set, as CI does).
#![allow(clippy::unwrap_used)]

use quantscope_engine::export::quantized_on_save;
use quantscope_engine::{Checkpoint, Options, Scheme, analyze};

mod common;
use common::minilm;

/// Issue 13: `embeddings.LayerNorm.weight` (0.145…0.917) under
/// `int8:tensor:entropy` clipped 99.7 % at 2.3 dB; it must clip < 5 %.
#[test]
fn layernorm_weight_under_entropy_does_not_collapse() {
    let Some(dir) = minilm() else { return };
    let ckpt = Checkpoint::open(&dir).unwrap();
    let name = "embeddings.LayerNorm.weight";
    let values = ckpt.load_f32(name).unwrap();
    let shape = [values.len()];
    for s in ["int8:tensor:entropy", "int8:tensor:entropy:asym"] {
        let kl = analyze(&values, &shape, &s.parse::<Scheme>().unwrap(), &Options::default()).unwrap();
        let mm_scheme: Scheme = s.replace("entropy", "minmax").parse().unwrap();
        let mm = analyze(&values, &shape, &mm_scheme, &Options::default()).unwrap();
        assert!(kl.metrics.clipped_fraction < 0.05, "{s}: clipped {}", kl.metrics.clipped_fraction);
        assert!(
            kl.metrics.sqnr_db > mm.metrics.sqnr_db - 3.0,
            "{s}: {} dB vs min-max {} dB",
            kl.metrics.sqnr_db,
            mm.metrics.sqnr_db
        );
    }
}

/// Per layer a save quantizes by default: (name, params, SQNR dB) under `scheme`.
fn layer_sqnr(ckpt: &Checkpoint, scheme: &str) -> Vec<(String, f64, f64)> {
    let scheme: Scheme = scheme.parse().unwrap();
    ckpt.tensors()
        .iter()
        .filter(|t| quantized_on_save(t, None))
        .map(|t| {
            let values = ckpt.load_f32(&t.name).unwrap();
            let r = analyze(&values, &t.shape, &scheme, &Options::default()).unwrap();
            (t.name.clone(), values.len() as f64, r.metrics.sqnr_db)
        })
        .collect()
}

fn weighted_mean(layers: &[(String, f64, f64)]) -> f64 {
    let n: f64 = layers.iter().map(|l| l.1).sum();
    layers.iter().map(|l| l.1 * l.2).sum::<f64>() / n
}

/// HQQ as saved (integer Z, S refit) beats min-max on MiniLM INT4 group-64:
/// ≥ 0.3 dB on the params-weighted mean, no layer more than 0.05 dB below.
#[test]
fn hqq_as_saved_beats_minmax() {
    let Some(dir) = minilm() else { return };
    let ckpt = Checkpoint::open(&dir).unwrap();
    let hqq = layer_sqnr(&ckpt, "int4:group64:hqq:asym");
    let mm = layer_sqnr(&ckpt, "int4:group64:minmax:asym");
    assert_eq!(hqq.len(), 37, "MiniLM's 36 Linear layers and the pooler");
    let (h, m) = (weighted_mean(&hqq), weighted_mean(&mm));
    let worst =
        hqq.iter().zip(&mm).map(|(a, b)| (a.2 - b.2, &a.0)).min_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
    eprintln!("hqq {h:.3} dB, min-max {m:.3} dB; worst layer {:+.3} dB ({})", worst.0, worst.1);
    assert!(h >= m + 0.3, "hqq {h:.3} dB vs min-max {m:.3} dB");
    assert!(worst.0 >= -0.05, "{}: {:+.3} dB vs min-max", worst.1, worst.0);
}
