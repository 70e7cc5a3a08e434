//! The desktop app (eframe 0.37), built as state → panels → commands:
//!
//! - [`state::AppState`] is what the panels read;
//! - [`panels`] draw from it and push [`command::Command`]s;
//! - [`app::QuantscopeApp`] applies the commands in one place, keeps the undo
//!   history, and sends work to the [`worker`] through [`requests`];
//! - [`dialogs`] shows file dialogs (native, or in-app when no portal answers).
//!
//! No panel does numerics: every number comes from the engine via the worker.

pub mod app;
pub mod command;
pub mod dialogs;
pub mod panels;
pub mod png;
pub mod requests;
pub mod script;
pub mod state;
pub mod worker;

use std::path::PathBuf;

use eframe::egui;

pub use app::QuantscopeApp;
pub use panels::histogram::{Edge, drag_calibration, range_lines};

/// The teaching sample, built into the binary so the app opens it from any folder.
pub const SAMPLE_BYTES: &[u8] = include_bytes!("../../../sample-models/teaching.safetensors");
pub const SAMPLE_NAME: &str = "teaching.safetensors (bundled sample)";

/// Runs the desktop app.
pub fn run(model: Option<PathBuf>) -> eframe::Result {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("quantscope")
            .with_inner_size([1500.0, 950.0])
            .with_min_inner_size([800.0, 560.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native("quantscope", options, Box::new(move |cc| Ok(Box::new(QuantscopeApp::new(cc, model)))))
}
