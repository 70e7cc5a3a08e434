//! `quantscope plan` end to end: the plan fits its budget, beats the uniform
//! scheme of the same size on the relative objective, and its recipe saves a
//! model whose covered layers take exactly the planned bytes.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use common::{quantscope, stdout_json, teaching};
use quantscope_engine::Checkpoint;
use quantscope_engine::planner::relative_cost;

fn sample() -> String {
    teaching().to_str().unwrap().to_string()
}

/// The uniform scheme's stored bytes and relative objective over the covered layers.
fn uniform(scheme: &str) -> (u64, f64) {
    let doc = stdout_json(&quantscope(&["report", &sample(), "--compare", scheme]));
    let rows = doc["rows"].as_array().unwrap();
    let bytes = rows.iter().map(|r| r["cells"][0]["stored_bytes"].as_u64().unwrap()).sum();
    let cost = rows
        .iter()
        .map(|r| {
            let db = r["cells"][0]["metrics"]["sqnr_db"].as_f64().unwrap_or(f64::INFINITY);
            relative_cost(r["params"].as_u64().unwrap(), db)
        })
        .sum();
    (bytes, cost)
}

#[test]
fn at_a_uniform_schemes_size_the_plan_is_no_worse_and_fits() {
    let (bytes, cost) = uniform("int8:tensor:minmax");
    let budget = bytes.to_string();
    let args = [
        "plan",
        &sample(),
        "--max-bytes",
        &budget,
        "--schemes",
        "int8:tensor:minmax",
        "int8:tensor:mse",
        "int8:channel:mse",
    ];
    let plan = stdout_json(&quantscope(&args));
    assert!(plan["total_bytes"].as_u64().unwrap() <= bytes);
    let value = plan["objective_value"].as_f64().unwrap();
    assert!(value <= cost, "plan {value} vs uniform {cost}");
    // MSE calibration costs no bytes: at the same size it must win somewhere.
    assert!(value < cost, "int8:tensor:mse fits in the same bytes: {value} vs {cost}");
    let frontier = plan["frontier"].as_array().unwrap();
    assert!(frontier.len() >= 2);
    assert!(frontier.windows(2).all(|w| w[0]["bytes"].as_u64() < w[1]["bytes"].as_u64()));
}

#[test]
fn worst_objective_raises_the_lowest_sqnr() {
    let (bytes, _) = uniform("int8:channel:minmax");
    let budget = bytes.to_string();
    let args = [
        "plan",
        &sample(),
        "--max-bytes",
        &budget,
        "--objective",
        "worst",
        "--schemes",
        "int8:tensor:minmax",
        "int8:channel:minmax",
    ];
    let plan = stdout_json(&quantscope(&args));
    let worst = plan["objective_value"].as_f64().unwrap();
    let lowest = plan["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["metrics"]["sqnr_db"].as_f64())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(worst, lowest);
    assert!(worst > 30.0, "per-channel fits everywhere at its own size: {worst}");
}

#[test]
fn the_recipe_saves_exactly_the_planned_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "plan",
        &sample(),
        "--bits-per-weight",
        "9.5",
        "--schemes",
        "int8:channel:minmax",
        "int8:group64:mse",
        "--output",
        "recipe",
    ];
    let out = quantscope(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recipe = tmp.path().join("plan.json");
    std::fs::write(&recipe, &out.stdout).unwrap();
    let json = [
        "plan",
        &sample(),
        "--bits-per-weight",
        "9.5",
        "--schemes",
        "int8:channel:minmax",
        "int8:group64:mse",
    ];
    let plan = stdout_json(&quantscope(&json));
    let saved = tmp.path().join("saved");
    let q =
        quantscope(&["quantize", &sample(), saved.to_str().unwrap(), "--recipe", recipe.to_str().unwrap()]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let ckpt = Checkpoint::open(&saved).unwrap();
    let mut written = 0u64;
    for l in plan["layers"].as_array().unwrap() {
        let name = l["name"].as_str().unwrap();
        let bytes: u64 = ckpt
            .tensors()
            .iter()
            .filter(|t| t.name == name || t.name.strip_prefix(name).is_some_and(|r| r.starts_with('_')))
            .map(|t| t.size_bytes as u64)
            .sum();
        assert_eq!(bytes, l["bytes"].as_u64().unwrap(), "{name} under {}", l["scheme"]);
        written += bytes;
    }
    assert_eq!(written, plan["total_bytes"].as_u64().unwrap());
    assert!(plan["bits_per_weight"].as_f64().unwrap() <= 9.5);
}

#[test]
fn a_budget_nothing_fits_is_a_one_line_error() {
    let out = quantscope(&["plan", &sample(), "--max-bytes", "10"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no plan fits") && err.contains("(10 bytes)") && err.lines().count() == 1, "{err}");
    assert!(err.contains("bits per weight") && err.contains("smaller scheme"), "{err}");
}

/// `--objective output` needs inputs and a model that runs: one-line errors.
#[test]
fn the_output_objective_without_inputs_or_a_runnable_model_is_a_one_line_error() {
    let no_inputs = quantscope(&["plan", &sample(), "--bits-per-weight", "6", "--objective", "output"]);
    let err = String::from_utf8_lossy(&no_inputs.stderr);
    assert_eq!(no_inputs.status.code(), Some(1), "{err}");
    assert!(err.contains("needs --inputs") && err.trim().lines().count() == 1, "{err}");
    // The teaching sample has no config.json: it cannot run.
    let args = ["plan", &sample(), "--bits-per-weight", "6", "--objective", "output", "--inputs", "builtin"];
    let cannot_run = quantscope(&args);
    let err = String::from_utf8_lossy(&cannot_run.stderr);
    assert_eq!(cannot_run.status.code(), Some(1), "{err}");
    assert!(err.contains("config.json") && err.trim().lines().count() == 1, "{err}");
    let unused = quantscope(&["plan", &sample(), "--bits-per-weight", "6", "--inputs", "builtin"]);
    assert_eq!(unused.status.code(), Some(1), "--inputs without the output objective is refused");
}

/// On MiniLM, the output objective's value is Σ params × 10^(−output SQNR/10)
/// over the planned layers, each output SQNR the one `report --inputs` gives
/// for that layer under its planned scheme.
#[test]
fn minilm_output_plan_is_the_sum_of_its_layers_output_noise() {
    let Some(dir) = common::minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let inputs = common::builtin_inputs(tmp.path(), 6);
    let (dir, inputs) = (dir.to_str().unwrap(), inputs.to_str().unwrap());
    let schemes = ["int4:channel:minmax", "int8:channel:minmax"];
    let mut args = vec!["plan", dir, "--bits-per-weight", "6", "--objective", "output", "--inputs", inputs];
    args.push("--schemes");
    args.extend(schemes);
    let plan = stdout_json(&quantscope(&args));
    assert_eq!(plan["objective"], "output");
    let mut by_hand = 0.0;
    let mut quantized = std::collections::BTreeMap::<&str, Vec<&str>>::new();
    for l in plan["layers"].as_array().unwrap() {
        let scheme = l["scheme"].as_str().unwrap();
        if scheme == "keep" {
            continue;
        }
        // The pooler never runs in the forward: its weight SQNR stands in.
        let m = &l["metrics"];
        let out = m["output_sqnr_db"].as_f64().or_else(|| m["sqnr_db"].as_f64()).unwrap();
        by_hand += relative_cost(l["params"].as_u64().unwrap(), out);
        quantized.entry(scheme).or_default().push(l["name"].as_str().unwrap());
    }
    let value = plan["objective_value"].as_f64().unwrap();
    assert!((value - by_hand).abs() <= 1e-9 * by_hand, "{value} vs {by_hand}");
    assert!(quantized.len() == 2, "6 bits per weight mixes the two schemes: {quantized:?}");
    // The same output SQNRs as `report --inputs` (run::output_error's own path).
    for (scheme, layers) in &quantized {
        let re = format!("^({})$", layers.iter().map(|l| regex::escape(l)).collect::<Vec<_>>().join("|"));
        let doc = stdout_json(&quantscope(&[
            "report",
            dir,
            "--inputs",
            inputs,
            "--tensors",
            &re,
            "--scheme",
            scheme,
        ]));
        for t in doc["tensors"].as_array().unwrap() {
            let planned = plan["layers"].as_array().unwrap().iter().find(|l| l["name"] == t["name"]).unwrap();
            let (a, b) =
                (planned["metrics"]["output_sqnr_db"].as_f64(), t["metrics"]["output_sqnr_db"].as_f64());
            match (a, b) {
                (Some(a), Some(b)) => {
                    assert!((a - b).abs() < 1e-9, "{} under {scheme}: {a} vs {b}", t["name"]);
                }
                _ => assert_eq!(
                    (a, t["name"].as_str()),
                    (b, Some("pooler.dense.weight")),
                    "only the pooler has none"
                ),
            }
        }
    }
}

/// One model SQNR: a MiniLM plan's `model_sqnr_db` is the figure `diff` reports
/// for the checkpoint its recipe saves (docs/numerics.md, "One model SQNR").
#[test]
fn minilm_plan_model_sqnr_equals_the_diff_of_its_save() {
    let Some(dir) = common::minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = dir.to_str().unwrap();
    let plan_args = |output: &'static str| ["plan", dir, "--bits-per-weight", "6", "--output", output];
    let plan = stdout_json(&quantscope(&plan_args("json")));
    let out = quantscope(&plan_args("recipe"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recipe = tmp.path().join("plan.json");
    std::fs::write(&recipe, &out.stdout).unwrap();
    let saved = tmp.path().join("saved");
    let q = quantscope(&["quantize", dir, saved.to_str().unwrap(), "--recipe", recipe.to_str().unwrap()]);
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stderr));
    let diff = stdout_json(&quantscope(&["diff", dir, saved.to_str().unwrap(), "--output", "json"]));
    let planned = plan["model_sqnr_db"].as_f64().unwrap();
    let published = &diff["totals"]["published"];
    let measured = published["model_sqnr_db"].as_f64().unwrap();
    assert!((planned - measured).abs() < 1e-6, "plan {planned} dB vs diff {measured} dB");
    // Both count the same layers: the plan's, kept ones included.
    let layers = plan["layers"].as_array().unwrap();
    assert_eq!(published["layers"].as_u64().unwrap() as usize, layers.len(), "{published}");
    // The second aggregate has its own name and is never below the model SQNR.
    assert!(published["mean_layer_sqnr_db"].as_f64().unwrap() >= measured);
    eprintln!("plan {planned:.6} dB, diff {measured:.6} dB over {} layers", layers.len());
}

/// GPTQ as a candidate of the output objective: solved on the captured inputs,
/// at round-to-nearest's bytes and a better output SQNR, so the plan takes it
/// wherever it takes INT4 group 128.
#[test]
fn gptq_candidates_win_the_output_objective_at_equal_bytes() {
    let Some(dir) = common::minilm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let inputs = common::builtin_inputs(tmp.path(), 16);
    let plan = common::stdout_json(&common::quantscope(&[
        "plan",
        dir.to_str().unwrap(),
        "--bits-per-weight",
        "4.6",
        "--schemes",
        "int4:group128",
        "int4:group128:gptq",
        "int8:channel",
        "--objective",
        "output",
        "--inputs",
        inputs.to_str().unwrap(),
        "--output",
        "json",
    ]));
    let layers = plan["layers"].as_array().unwrap();
    let scheme = |l: &serde_json::Value| l["scheme"].as_str().unwrap_or("").to_string();
    let gptq = layers.iter().filter(|l| scheme(l) == "int4:group128:gptq").count();
    assert!(gptq >= 20, "{gptq} GPTQ layers");
    assert!(layers.iter().all(|l| scheme(l) != "int4:group128:minmax"), "round-to-nearest never wins");
    let cell = layers.iter().find(|l| scheme(l) == "int4:group128:gptq").unwrap();
    assert!(
        cell["metrics"]["output_sqnr_db"].as_f64().unwrap() > cell["metrics"]["sqnr_db"].as_f64().unwrap()
    );
}
