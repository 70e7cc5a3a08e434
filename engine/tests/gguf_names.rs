//! GGUF ↔ Hugging Face names against gguf-py's own `TensorNameMap` and the
//! converter's choices on real converted files (fixtures written by
//! `tests/python/gguf_names.py`), and the rope heads of permuted Q/K rows.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;

use quantscope_engine::gguf::names::{rope_heads, to_gguf, to_hf};
use quantscope_engine::gguf::{Header, Value};

fn fixture(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gguf/names").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn pairs(f: &serde_json::Value) -> Vec<(String, String, String)> {
    f["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (s("hf"), s("gguf"), s("transform"))
        })
        .collect()
}

#[test]
fn every_family_pairs_both_ways_as_gguf_py_does() {
    let mut checked = 0;
    for family in ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "bert"] {
        let f = fixture(&format!("{family}.json"));
        let arch = f["arch"].as_str().unwrap();
        for (hf, gguf, _) in pairs(&f) {
            assert_eq!(to_gguf(arch, &hf).as_deref(), Some(gguf.as_str()), "{family}: {hf}");
            let back = to_hf(arch, &gguf).unwrap_or_default();
            let hf_unprefixed = hf.strip_prefix("bert.").unwrap_or(&hf);
            assert_eq!(back, hf_unprefixed, "{family}: {gguf}");
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} pairs");
}

fn llama_header(heads: u32, kv_heads: u32) -> Header {
    let metadata = vec![
        ("general.architecture".to_string(), Value::String("llama".into())),
        ("llama.attention.head_count".to_string(), Value::U32(heads)),
        ("llama.attention.head_count_kv".to_string(), Value::U32(kv_heads)),
    ];
    Header { version: 3, kv_spans: vec![(0, 0); 3], metadata, alignment: 32, tensors: vec![] }
}

#[test]
fn converted_files_pair_and_permute_as_the_converter_did() {
    for file in ["tiny-llama.converted.json", "minilm.converted.json"] {
        let f = fixture(file);
        let arch = f["arch"].as_str().unwrap();
        let heads = f["n_head"].as_u64().unwrap() as u32;
        let kv = f["n_head_kv"].as_u64().unwrap() as u32;
        let mut header = llama_header(heads, kv);
        if arch != "llama" {
            header.metadata[0].1 = Value::String(arch.into());
        }
        let all = pairs(&f);
        assert!(all.len() > 20, "{file}: {} pairs", all.len());
        for (hf, gguf, transform) in all {
            assert_eq!(to_gguf(arch, &hf).as_deref(), Some(gguf.as_str()), "{file}: {hf}");
            let expected = match transform.as_str() {
                "identity" => None,
                t if t.starts_with("permute(n_head_kv=") => Some(kv as usize),
                t if t.starts_with("permute(n_head=") => Some(heads as usize),
                t => panic!("{file}: unknown transform {t}"),
            };
            assert_eq!(rope_heads(&header, &gguf), expected, "{file}: {gguf}");
        }
    }
}
