//! The `quantscope` binary: parses arguments, then runs the CLI command or the
//! desktop app. It holds no numerics of its own.

use std::process::ExitCode;

use clap::Parser;
use quantscope::{cli, gui};

fn main() -> ExitCode {
    // Built for x86-64-v3 (.cargo/config.toml): say so instead of dying on SIGILL.
    #[cfg(target_arch = "x86_64")]
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
        eprintln!(
            "quantscope: error: this build needs a CPU with AVX2 and FMA (x86-64-v3); rebuild without .cargo/config.toml's target-cpu for older CPUs"
        );
        return ExitCode::from(1);
    }
    let cli = cli::Cli::parse();
    let result = match &cli.command {
        Some(command) => command.run(&mut std::io::stdout().lock(), &cli::Console::new(cli.quiet)),
        None => gui::run(cli.model.clone()).map_err(|e| anyhow::anyhow!("cannot start the window: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the engine's errors already name the file and the fault.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("quantscope: error: {msg}");
            ExitCode::from(1)
        }
    }
}
