//! `quantscope diff ORIGINAL QUANTIZED` end to end: the JSON shape, pairing,
//! `--tensors`, `--compare`, CSV, and the malformed quantized corpus (one broken
//! layer is listed with a one-line reason naming it; the rest still compares).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;
mod corpus;

use common::{quantscope, stdout_json};
use corpus::quantized::{write_original, write_quantized_corpus};

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(f64::MIN_POSITIVE)
}

/// The original and a quantscope save of it under `int4:group32:minmax:asym`.
fn saved(tmp: &std::path::Path) -> (String, String) {
    let orig = write_original(&tmp.join("orig"));
    let good = tmp.join("good");
    let o = quantscope(&[
        "quantize",
        orig.to_str().unwrap(),
        good.to_str().unwrap(),
        "--scheme",
        "int4:group32:minmax:asym",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (orig.display().to_string(), good.display().to_string())
}

#[test]
fn a_quantscope_save_diffs_equal_to_its_own_rtn_and_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (orig, good) = saved(tmp.path());
    let d = stdout_json(&quantscope(&["diff", &orig, &good, "--compare", "int8:channel"]));
    assert_eq!(d["method"], "compressed-tensors");
    assert_eq!(d["unpaired"], serde_json::json!([]));
    let names: Vec<&str> =
        d["tensors"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a.weight", "b.weight"]);
    let report = stdout_json(&quantscope(&["report", &orig, "--scheme", "int4:group32:minmax:asym"]));
    for t in d["tensors"].as_array().unwrap() {
        let r = report["tensors"].as_array().unwrap().iter().find(|r| r["name"] == t["name"]).unwrap();
        assert_eq!(t["shape"], serde_json::json!([16, 64]));
        let s = &t["stored"];
        assert_eq!(
            (s["format"].as_str(), s["bits"].as_u64(), s["group_size"].as_u64()),
            (Some("pack-quantized"), Some(4), Some(32))
        );
        assert_eq!((s["symmetric"].as_bool(), s["scale_dtype"].as_str()), (Some(false), Some("F32")));
        assert_eq!(s["short"], "int4:group32:minmax:asym");
        let keys: Vec<&String> = t["schemes"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["int4:group32:minmax:asym", "int8:channel:minmax"]);
        // The save is the RTN scheme, so the published R' is its R' exactly.
        for k in ["mse", "sqnr_db", "max_abs_err", "cosine"] {
            let (p, own, rep) =
                (&t["metrics"][k], &t["schemes"]["int4:group32:minmax:asym"][k], &r["metrics"][k]);
            assert!(rel(p.as_f64().unwrap(), own.as_f64().unwrap()) < 1e-12, "{k}: {p} vs {own}");
            assert!(rel(p.as_f64().unwrap(), rep.as_f64().unwrap()) < 1e-12, "{k}: {p} vs report {rep}");
        }
        assert!(t["schemes"]["int8:channel:minmax"]["sqnr_db"].as_f64() > t["metrics"]["sqnr_db"].as_f64());
    }
    let tot = &d["totals"]["published"];
    assert_eq!((tot["layers"].as_u64(), tot["params"].as_u64()), (Some(2), Some(2048)));
    assert!(
        d["totals"]["schemes"]["int8:channel:minmax"]["mean_layer_sqnr_db"].as_f64()
            > tot["mean_layer_sqnr_db"].as_f64()
    );

    // `report` on the quantized checkpoint names each stored part's scheme.
    let r = stdout_json(&quantscope(&["report", &good]));
    let stored =
        |n: &str| r["tensors"].as_array().unwrap().iter().find(|t| t["name"] == n).unwrap()["stored"].clone();
    assert_eq!(stored("a.weight_packed")["short"], "int4:group32:minmax:asym");
    assert_eq!(stored("b.weight_zero_point")["format"], "pack-quantized");
    assert!(stored("b.bias").is_null());

    let only_b = stdout_json(&quantscope(&["diff", &orig, &good, "--tensors", "^b\\."]));
    assert_eq!(only_b["tensors"].as_array().unwrap().len(), 1);
    assert_eq!(only_b["tensors"][0]["name"], "b.weight");
    let csv = quantscope(&["diff", &orig, &good, "--output", "csv"]);
    let csv = String::from_utf8(csv.stdout).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("name,shape,format,bits,group_size,symmetric,scale_dtype,short,count,mse"));
    assert!(lines[0].ends_with(",sqnr_db@int4:group32:minmax:asym"));
    assert!(
        lines[1].starts_with("a.weight,16x64,pack-quantized,4,32,false,F32,int4:group32:minmax:asym,1024,")
    );
}

#[test]
fn a_layer_missing_from_the_original_or_unquantized_is_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let (orig, good) = saved(tmp.path());
    // Diffing the original against itself: nothing is quantized.
    let d = stdout_json(&quantscope(&["diff", &orig, &orig]));
    assert_eq!(d["method"], "inferred");
    assert_eq!(d["tensors"], serde_json::json!([]));
    let reasons: Vec<(&str, &str)> = d["unpaired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["name"].as_str().unwrap(), u["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(reasons, [("a.weight", "stored unquantized"), ("b.weight", "stored unquantized")]);
    // Against an unrelated original (the teaching sample), nothing pairs.
    let teaching = common::teaching().display().to_string();
    let d = stdout_json(&quantscope(&["diff", &teaching, &good, "--tensors", "^a\\."]));
    assert_eq!(d["unpaired"][0]["name"], "a.weight");
    assert_eq!(d["unpaired"][0]["reason"], "not in the original");
}

#[test]
fn every_malformed_quantized_layer_is_one_line_and_the_rest_compares() {
    let tmp = tempfile::tempdir().unwrap();
    let (orig, good) = saved(tmp.path());
    let cases = write_quantized_corpus(std::path::Path::new(&good), &tmp.path().join("corpus"));
    assert_eq!(cases.len(), 8);
    let mut failures = Vec::new();
    for (case, path) in &cases {
        let path = path.to_str().unwrap();
        let o = quantscope(&["diff", &orig, path]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let ok = if case.fatal {
            // The config is refused in one line; the checkpoint itself still opens.
            let report = quantscope(&["report", path]);
            o.status.code() == Some(1)
                && err.lines().count() == 1
                && case.expect.iter().all(|e| err.contains(e))
                && report.status.success()
        } else {
            let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            let names: Vec<&str> = d["tensors"]
                .as_array()
                .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
                .unwrap_or_default();
            let reason = d["unpaired"]
                .as_array()
                .and_then(|a| a.iter().find(|u| u["name"] == "a.weight"))
                .and_then(|u| u["reason"].as_str())
                .unwrap_or("");
            o.status.success()
                && names == ["b.weight"]
                && !reason.contains('\n')
                && case.expect.iter().all(|e| reason.contains(e))
                && err.lines().all(|l| l.contains("tensor 'a.weight'"))
        };
        println!("{:28} {err}", case.name);
        if !ok {
            failures.push(format!(
                "{}: exit {:?}: {err} {}",
                case.name,
                o.status.code(),
                String::from_utf8_lossy(&o.stdout)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_scheme_quantscope_saves_reads_back_as_its_own_rtn() {
    let tmp = tempfile::tempdir().unwrap();
    let orig = write_original(&tmp.path().join("orig")).display().to_string();
    // Packed INT at odd widths (codes straddle words), per tensor, FP8 with and
    // without a centre (no quantization_config: inferred from the names), E5M2.
    for scheme in [
        "int3:channel:minmax",
        "int2:group16:minmax:asym",
        "int8:tensor:minmax:asym",
        "e4m3:channel:minmax:asym",
        "e5m2:tensor:minmax",
        "e4m3:tensor:minmax",
    ] {
        let out = tmp.path().join(scheme.replace(':', "_"));
        let o = quantscope(&["quantize", &orig, out.to_str().unwrap(), "--scheme", scheme]);
        assert!(o.status.success(), "{scheme}: {}", String::from_utf8_lossy(&o.stderr));
        let d = stdout_json(&quantscope(&["diff", &orig, out.to_str().unwrap()]));
        assert_eq!(d["tensors"].as_array().unwrap().len(), 2, "{scheme}: {}", d["unpaired"]);
        for t in d["tensors"].as_array().unwrap() {
            assert_eq!(t["stored"]["short"], scheme);
            let own = &t["schemes"][scheme];
            for k in ["mse", "sqnr_db", "max_abs_err", "cosine"] {
                let (p, o) = (t["metrics"][k].as_f64().unwrap(), own[k].as_f64().unwrap());
                assert!(rel(p, o) < 1e-12, "{scheme} {}: {k} {p} vs RTN {o}", t["name"]);
            }
        }
    }
}
