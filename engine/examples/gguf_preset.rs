//! Prints, as JSON, the type llama-quantize would give each tensor of a GGUF
//! file under a preset (`engine::gguf::preset`), for
//! `tests/python/gguf_preset_reference.py --check` to compare with the real
//! llama-quantize.
//!
//! `gguf_preset FILE PRESET [--tensor-type PATTERN=TYPE]… [--pure] [--imatrix]
//! [--leave-output-tensor] [--output-tensor-type TYPE] [--token-embedding-type TYPE]`

use anyhow::{Context, bail};
use quantscope_engine::gguf::GgufFile;
use quantscope_engine::gguf::preset::{self, ModelInfo, Options, TensorType};

fn options(preset: &str, flags: &[String]) -> anyhow::Result<Options> {
    let mut opts = Options::new(preset.parse()?);
    let mut it = flags.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--tensor-type" => opts.tensor_types.push(TensorType::parse(value()?)?),
            "--output-tensor-type" => opts.output_tensor_type = Some(preset::ggml_type_named(value()?)?),
            "--token-embedding-type" => opts.token_embedding_type = Some(preset::ggml_type_named(value()?)?),
            "--pure" => opts.pure = true,
            "--imatrix" => opts.imatrix = true,
            "--leave-output-tensor" => opts.leave_output_tensor = true,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(opts)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, preset, flags @ ..] = args.as_slice() else {
        bail!("usage: gguf_preset FILE PRESET [--tensor-type PATTERN=TYPE]… [--pure] [--imatrix] …");
    };
    let opts = options(preset, flags)?;
    let file = GgufFile::open(path)?;
    let info = ModelInfo::from_file(&file)?;
    let choices = preset::choose(&info, &file.tensors, &opts)?;
    let tensors: Vec<serde_json::Value> = choices
        .iter()
        .map(|c| {
            serde_json::json!({
                "name": c.name,
                "from": c.from.name,
                "to": c.to.name,
                "quantizable": c.quantizable,
                "requires_imatrix": c.requires_imatrix,
                "reason": c.reason,
            })
        })
        .collect();
    let out = serde_json::json!({
        "preset": opts.preset.name(),
        "file_type": opts.file_type(&info),
        "tensors": tensors,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
