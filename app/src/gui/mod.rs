//! The desktop app (eframe 0.37). This module holds the app state, the menu,
//! opening files (argument, dialog, drag-and-drop, recent list) and the traffic
//! with the [`worker`]. Panels live in their own modules and only read state and
//! record what the user changed; no panel does numerics.

mod browser;
mod histogram;
mod panels;
pub mod png;
pub mod save;
pub mod sensitivity;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use eframe::egui;
use quantscope_engine::{Calibration, Granularity, ManualRange, Options, Scheme};
use serde::{Deserialize, Serialize};

pub use histogram::{Edge, drag_calibration};
use worker::{Analysis, AnalyzeRequest, ModelSummary, Request, Response, Source, Worker};

/// The teaching sample, built into the binary so the app opens it from any folder.
pub const SAMPLE_BYTES: &[u8] = include_bytes!("../../../sample-models/teaching.safetensors");
pub const SAMPLE_NAME: &str = "teaching.safetensors (bundled sample)";

const WEIGHT_BINS: usize = 400;
const ERROR_BINS: usize = 120;
const MAX_RECENT: usize = 8;

/// What persists across runs (eframe storage).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The scheme for the whole model.
    pub scheme: Scheme,
    /// Per-layer overrides, by tensor name.
    pub overrides: BTreeMap<String, Scheme>,
    /// "Quantize when saving" where the user changed the default rule.
    pub save_choice: BTreeMap<String, bool>,
    pub recent: Vec<PathBuf>,
    pub log_counts: bool,
    pub show_grid: bool,
    pub show_all_calibrations: bool,
    /// p used when calibration is percentile, and for the all-methods overlay.
    pub percentile: f64,
    /// The sensitivity view's scheme set.
    pub compare_schemes: Vec<Scheme>,
    /// The per-slice plot shows MSE instead of SQNR.
    pub slice_mse: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            scheme: Scheme::default(),
            overrides: BTreeMap::new(),
            save_choice: BTreeMap::new(),
            recent: Vec::new(),
            log_counts: false,
            show_grid: false,
            show_all_calibrations: false,
            percentile: 99.9,
            compare_schemes: quantscope_engine::sweep::default_schemes(),
            slice_mse: false,
        }
    }
}

/// The open model as the UI sees it.
pub struct Model {
    pub summary: ModelSummary,
    /// SQNR per tensor under its current scheme, filled in by the sweep.
    pub sqnr: HashMap<String, Option<f64>>,
    pub sweep_done: usize,
    pub sweep_total: usize,
}

/// Screen rectangles of the plots that can be saved as PNG.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlotRects {
    pub histogram: Option<egui::Rect>,
    pub per_slice: Option<egui::Rect>,
}

/// What the central area shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum View {
    /// One layer: histogram, controls, error plots.
    #[default]
    Layer,
    /// The whole model: ranked table and layers × schemes matrix.
    Sensitivity,
}

pub struct QuantscopeApp {
    pub settings: Settings,
    worker: Worker,
    pub model: Option<Model>,
    pub selected: Option<String>,
    /// The newest result for the selected tensor (kept while a new one computes).
    pub analysis: Option<Arc<Analysis>>,
    pub error: Option<String>,
    /// Value clicked on the histogram, for the worked example.
    pub clicked_value: Option<f32>,
    /// Slice shown by the teaching panel (per-channel / per-group).
    pub teach_slice: usize,
    browser: browser::BrowserState,
    dragging: Option<Edge>,
    generation: u64,
    open_generation: u64,
    analyze_sent: Option<(u64, String, Scheme, bool)>,
    /// Generation of the request that `analysis` (or the last error) answered.
    analysis_generation: u64,
    sweep_sent: Option<(u64, Scheme, BTreeMap<String, Scheme>)>,
    pub save: save::SaveDialog,
    pub view: View,
    pub sensitivity: sensitivity::SensitivityState,
    /// The last "Save as PNG" outcome.
    pub png_status: png::Status,
    /// Where the exportable plots were drawn last frame (for "PNG…").
    pub plot_rects: PlotRects,
    pub last_frame_ms: f32,
    /// Every frame's UI time, kept when QUANTSCOPE_FRAME_STATS is set.
    frame_log: Option<Vec<f32>>,
}

impl QuantscopeApp {
    /// Builds the app and starts opening `model` (or the bundled sample).
    pub fn new(cc: &eframe::CreationContext<'_>, model: Option<PathBuf>) -> Self {
        let settings: Settings =
            cc.storage.and_then(|s| eframe::get_value(s, eframe::APP_KEY)).unwrap_or_default();
        let ctx = cc.egui_ctx.clone();
        let mut app = Self::with_worker(settings, Worker::spawn(move || ctx.request_repaint()));
        match model {
            Some(p) => app.open(Source::Path(p)),
            None => app.open(Source::Bytes { name: SAMPLE_NAME.into(), bytes: SAMPLE_BYTES.to_vec() }),
        }
        app
    }

    fn with_worker(settings: Settings, worker: Worker) -> Self {
        Self {
            settings,
            worker,
            model: None,
            selected: None,
            analysis: None,
            error: None,
            clicked_value: None,
            teach_slice: 0,
            browser: browser::BrowserState::default(),
            dragging: None,
            generation: 0,
            open_generation: 0,
            analyze_sent: None,
            analysis_generation: 0,
            sweep_sent: None,
            save: save::SaveDialog::default(),
            view: View::Layer,
            sensitivity: sensitivity::SensitivityState { top_n: 5, ..Default::default() },
            png_status: png::Status::default(),
            plot_rects: PlotRects::default(),
            last_frame_ms: 0.0,
            frame_log: std::env::var_os("QUANTSCOPE_FRAME_STATS").map(|_| Vec::new()),
        }
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Opens a model in the background; the current one stays until it succeeds.
    pub fn open(&mut self, source: Source) {
        if let Source::Path(p) = &source {
            self.settings.recent.retain(|r| r != p);
            self.settings.recent.insert(0, p.clone());
            self.settings.recent.truncate(MAX_RECENT);
        }
        let generation = self.next_generation();
        self.open_generation = generation;
        self.worker.send(Request::Open { generation, source });
    }

    pub fn open_path(&mut self, path: impl Into<PathBuf>) {
        self.open(Source::Path(path.into()));
    }

    /// The scheme in force for `tensor`: its override, or the model's.
    pub fn scheme_for(&self, tensor: &str) -> Scheme {
        self.settings.overrides.get(tensor).copied().unwrap_or(self.settings.scheme)
    }

    pub fn select(&mut self, name: &str) {
        if self.selected.as_deref() != Some(name) {
            self.selected = Some(name.to_string());
            self.clicked_value = None;
            self.teach_slice = 0;
        }
    }

    /// Whether a result for the current selection and scheme is still computing.
    pub fn is_busy(&self) -> bool {
        self.analyze_sent.as_ref().is_some_and(|(g, ..)| self.analysis_generation != *g)
    }

    /// Moves one clipping-range edge to `x` (what dragging a range line does):
    /// switches the selected layer to manual calibration.
    pub fn drag_range_to(&mut self, edge: Edge, x: f64) {
        let (Some(name), Some(a)) = (self.selected.clone(), self.analysis.clone()) else { return };
        let mut scheme = self.scheme_for(&name);
        scheme.calibration = drag_calibration(&scheme, &a.result, edge, x);
        self.settings.overrides.insert(name, scheme);
    }

    fn poll_worker(&mut self) {
        while let Some(response) = self.worker.try_recv() {
            match response {
                Response::Opened { generation, result } => {
                    if generation != self.open_generation {
                        continue;
                    }
                    match result {
                        Ok(summary) => {
                            // Start on the first layer a save would quantize, in name order
                            // (the browser's), not on a huge embedding: the first histogram
                            // then costs one ordinary layer.
                            let first = |pick: &dyn Fn(&quantscope_engine::TensorInfo) -> bool| {
                                summary.tensors.iter().filter(|t| pick(t)).map(|t| t.name.clone()).min()
                            };
                            self.selected =
                                first(&|t| quantscope_engine::export::default_exclusion(t).is_none())
                                    .or_else(|| first(&|t| t.is_quantizable() && t.shape.len() >= 2));
                            self.model =
                                Some(Model { summary, sqnr: HashMap::new(), sweep_done: 0, sweep_total: 0 });
                            self.analysis = None;
                            self.analyze_sent = None;
                            self.sweep_sent = None;
                            self.sensitivity.sent = None;
                            self.sensitivity.result = None;
                            self.error = None;
                        }
                        Err(e) => self.error = Some(format!("Could not open: {e}")),
                    }
                }
                Response::Analyzed { generation, result } => match result {
                    Ok(a) if self.analyze_sent.as_ref().is_some_and(|s| s.0 == generation) => {
                        self.analysis_generation = generation;
                        self.analysis = Some(a);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if self.analyze_sent.as_ref().is_some_and(|s| s.0 == generation) {
                            self.analysis_generation = generation;
                        }
                        self.error = Some(e);
                    }
                },
                Response::Swept { generation, tensor, sqnr_db, done, total } => {
                    if self.sweep_sent.as_ref().is_some_and(|s| s.0 == generation)
                        && let Some(m) = &mut self.model
                    {
                        m.sqnr.insert(tensor, sqnr_db);
                        m.sweep_done = done;
                        m.sweep_total = total;
                    }
                }
                Response::Exporting { done, total } => {
                    if self.save.running() {
                        self.save.progress = Some((done, total));
                    }
                }
                Response::Exported(result) => self.save.finished(result),
                Response::Comparing { generation, done, total } => {
                    if self.sensitivity.sent.as_ref().is_some_and(|s| s.0 == generation) {
                        self.sensitivity.progress = Some((done, total));
                    }
                }
                Response::Compared { generation, result } => {
                    if self.sensitivity.sent.as_ref().is_some_and(|s| s.0 == generation) {
                        self.sensitivity.progress = None;
                        match result {
                            Ok(s) => {
                                self.sensitivity.result = Some(s);
                                self.sensitivity.error = None;
                            }
                            Err(e) => self.sensitivity.error = Some(e),
                        }
                    }
                }
            }
        }
    }

    /// Sends the analysis and sweep the current state calls for, if not already sent.
    fn request_work(&mut self) {
        let Some(model) = &self.model else { return };
        if let Some(name) = self.selected.clone() {
            let scheme = self.scheme_for(&name);
            let compare = self.settings.show_all_calibrations;
            let same = self
                .analyze_sent
                .as_ref()
                .is_some_and(|(_, n, s, c)| *n == name && *s == scheme && *c == compare);
            if !same && model.summary.tensors.iter().any(|t| t.name == name && t.is_quantizable()) {
                let generation = self.next_generation();
                self.worker.send(Request::Analyze(AnalyzeRequest {
                    generation,
                    tensor: name.clone(),
                    scheme,
                    options: Options {
                        weight_bins: WEIGHT_BINS,
                        error_bins: ERROR_BINS,
                        keep_dequantized: false,
                    },
                    compare_percentile: compare.then_some(self.settings.percentile),
                }));
                self.analyze_sent = Some((generation, name, scheme, compare));
            }
        }
        // The sensitivity matrix follows the save set and the scheme set, while shown.
        if self.view == View::Sensitivity {
            let tensors = self.sensitivity_tensors();
            let schemes = self.settings.compare_schemes.clone();
            let same = self.sensitivity.sent.as_ref().is_some_and(|(_, t, s)| *t == tensors && *s == schemes);
            if !same {
                let generation = self.next_generation();
                self.worker.send(Request::Compare {
                    generation,
                    tensors: tensors.clone(),
                    schemes: schemes.clone(),
                });
                self.sensitivity.progress = Some((0, tensors.len()));
                self.sensitivity.sent = Some((generation, tensors, schemes));
            }
        }
        // The SQNR column follows the scheme; while a range is dragged it waits.
        let sweep_key = (self.settings.scheme, self.settings.overrides.clone());
        let sweep_same =
            self.sweep_sent.as_ref().is_some_and(|(_, s, o)| *s == sweep_key.0 && *o == sweep_key.1);
        if !sweep_same && self.dragging.is_none() {
            let generation = self.next_generation();
            self.worker.send(Request::Sweep {
                generation,
                schemes: sweep_key.1.clone(),
                default: sweep_key.0,
            });
            if let Some(m) = &mut self.model {
                m.sweep_done = 0;
                m.sweep_total = m.summary.tensors.iter().filter(|t| t.is_quantizable()).count();
            }
            self.sweep_sent = Some((generation, sweep_key.0, sweep_key.1));
        }
    }

    /// Test hook: makes the worker panic once.
    pub fn inject_worker_panic(&self) {
        self.worker.send(Request::Panic);
    }

    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped = ctx.input(|i| i.raw.dropped_files.clone());
        if let Some(file) = dropped.first() {
            self.open_path(file.path().to_path_buf());
        }
    }

    fn menu_ui(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("Open file…").clicked() {
                    if let Some(p) = rfd::FileDialog::new()
                        .add_filter("safetensors or index", &["safetensors", "json"])
                        .pick_file()
                    {
                        self.open_path(p);
                    }
                    ui.close();
                }
                if ui.button("Open folder…").clicked() {
                    if let Some(p) = rfd::FileDialog::new().pick_folder() {
                        self.open_path(p);
                    }
                    ui.close();
                }
                if ui.button("Open bundled sample").clicked() {
                    self.open(Source::Bytes { name: SAMPLE_NAME.into(), bytes: SAMPLE_BYTES.to_vec() });
                    ui.close();
                }
                ui.separator();
                save::file_menu_ui(self, ui);
                ui.separator();
                if ui.button("Quit (Ctrl+Q)").clicked() {
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
                ui.menu_button("Recent", |ui| {
                    if self.settings.recent.is_empty() {
                        ui.weak("(none yet)");
                    }
                    for p in self.settings.recent.clone() {
                        if ui.button(p.display().to_string()).clicked() {
                            self.open_path(p);
                            ui.close();
                        }
                    }
                });
            });
            ui.selectable_value(&mut self.view, View::Layer, "Layer");
            ui.selectable_value(&mut self.view, View::Sensitivity, "Sensitivity");
            ui.menu_button("View", |ui| {
                ui.checkbox(&mut self.settings.log_counts, "Log-scale counts");
                ui.checkbox(&mut self.settings.show_grid, "Quantization grid");
                ui.checkbox(&mut self.settings.show_all_calibrations, "All calibration methods");
            });
            ui.separator();
            self.status_ui(ui);
        });
    }

    fn status_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(m) = &self.model {
            ui.label(format!(
                "{} · {} tensors · {:.1} MB",
                m.summary.name,
                m.summary.tensors.len(),
                m.summary.size_bytes as f64 / 1e6
            ));
            if m.sweep_total > 0 && m.sweep_done < m.sweep_total {
                ui.add(
                    egui::ProgressBar::new(m.sweep_done as f32 / m.sweep_total as f32)
                        .desired_width(140.0)
                        .text(format!("SQNR {}/{}", m.sweep_done, m.sweep_total)),
                );
            }
        } else {
            ui.label("Opening…");
        }
        if self.is_busy() {
            ui.spinner();
        }
        if let Some(a) = &self.analysis {
            ui.weak(format!("computed in {:.0} ms", a.elapsed_ms));
        }
        if let Some(line) = self.png_status.lock().ok().and_then(|s| s.clone()) {
            ui.weak(line);
        }
    }

    fn error_banner_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(e) = self.error.clone() {
            ui.horizontal(|ui| {
                ui.colored_label(ui.visuals().error_fg_color, format!("Error: {e}"));
                if ui.small_button("Dismiss").clicked() {
                    self.error = None;
                }
            });
        }
    }
}

impl eframe::App for QuantscopeApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = std::time::Instant::now();
        let ctx = ui.ctx().clone();
        self.poll_worker();
        self.handle_dropped_files(&ctx);
        if ctx.input(|i| i.modifiers.command && i.key_pressed(egui::Key::Q)) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }

        egui::Panel::top("menu").show(ui, |ui| {
            self.menu_ui(ui);
            self.error_banner_ui(ui);
        });
        egui::Panel::left("browser").resizable(true).default_size(430.0).show(ui, |ui| {
            browser::browser_ui(self, ui);
        });
        if self.view == View::Layer {
            egui::Panel::right("inspector").resizable(true).default_size(400.0).show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    panels::controls_ui(self, ui);
                    panels::metrics_ui(self, ui);
                    panels::teach_ui(self, ui);
                });
            });
        }
        egui::Panel::bottom("error_plots").resizable(true).min_size(220.0).default_size(240.0).show(
            ui,
            |ui| {
                panels::error_plots_ui(self, ui);
            },
        );
        egui::CentralPanel::default().show(ui, |ui| match self.view {
            View::Layer => histogram::histogram_ui(self, ui),
            View::Sensitivity => sensitivity::sensitivity_ui(self, ui),
        });
        save::save_window(self, &ctx);

        self.request_work();
        self.last_frame_ms = started.elapsed().as_secs_f32() * 1e3;
        if let Some(log) = &mut self.frame_log {
            log.push(self.last_frame_ms);
            if log.len() % 250 == 0 {
                print_frame_stats(log);
            }
        }
        if self.is_busy()
            || self.save.running()
            || self.sensitivity.progress.is_some()
            || self.model.as_ref().is_some_and(|m| m.sweep_done < m.sweep_total)
        {
            // Keep the spinner and progress bar moving while work is out.
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }
}

impl Drop for QuantscopeApp {
    /// With QUANTSCOPE_FRAME_STATS set, prints the UI frame times on exit.
    fn drop(&mut self) {
        if let Some(log) = &self.frame_log {
            print_frame_stats(log);
        }
    }
}

fn print_frame_stats(log: &[f32]) {
    if log.is_empty() {
        return;
    }
    let mut sorted = log.to_vec();
    sorted.sort_by(f32::total_cmp);
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    let slow: Vec<String> =
        log.iter().enumerate().filter(|(_, t)| **t > 16.0).map(|(i, t)| format!("#{i}: {t:.1}")).collect();
    eprintln!(
        "frame stats: {} frames, median {:.2} ms, p99 {:.2} ms, max {:.2} ms; over 16 ms: [{}]",
        sorted.len(),
        pct(0.5),
        pct(0.99),
        sorted[sorted.len() - 1],
        slow.join(", ")
    );
}

/// Runs the desktop app.
pub fn run(model: Option<PathBuf>) -> eframe::Result {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("quantscope")
            .with_inner_size([1500.0, 950.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native("quantscope", options, Box::new(move |cc| Ok(Box::new(QuantscopeApp::new(cc, model)))))
}

/// A short label for a calibration, for legends and menus.
pub fn calibration_label(c: &Calibration) -> String {
    match c {
        Calibration::MinMax => "min-max".into(),
        Calibration::Percentile { p } => format!("percentile {p}"),
        Calibration::Mse => "MSE".into(),
        Calibration::Entropy => "KL-entropy".into(),
        Calibration::Hqq => "HQQ".into(),
        Calibration::Manual(ManualRange::Range { .. }) => "manual range".into(),
        Calibration::Manual(ManualRange::Ratio { r }) => format!("manual ×{r:.3}"),
    }
}

/// A short label for a granularity.
pub fn granularity_label(g: &Granularity) -> String {
    match g {
        Granularity::Tensor => "per-tensor".into(),
        Granularity::Channel { axis } => format!("per-channel (axis {axis})"),
        Granularity::Group { size } => format!("per-group ({size})"),
    }
}
