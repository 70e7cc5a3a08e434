//! The app shell: each frame it applies the worker's answers to the
//! [`AppState`], lets every panel draw from that state and collect
//! [`Command`]s, applies the commands in one place ([`QuantscopeApp::apply`]),
//! and asks the worker for whatever the new state needs.
//!
//! ```text
//!   worker answers ─► AppState ─► panels (read only) ─► Vec<Command>
//!         ▲                                                  │
//!         └──────── Requests ◄── apply (history: undo) ◄─────┘
//! ```

use std::path::PathBuf;

use eframe::egui;

use super::command::{Command, CsvKind, DialogPurpose, History};
use super::dialogs::{Backend, DialogOutcome, FileDialogs};
use super::panels::Panels;
use super::png;
use super::requests::Requests;
use super::script;
use super::state::{AppState, Doc, Preview, Settings};
use super::worker::jobs::capture::Capture;
use super::worker::jobs::compare::Compare;
use super::worker::jobs::end_to_end::EndToEnd;
use super::worker::jobs::open::Open;
use super::worker::jobs::panic::Panic;
use super::worker::jobs::save::Save;
use super::worker::{Job, Source, Worker};
use super::{SAMPLE_BYTES, SAMPLE_NAME};

pub struct QuantscopeApp {
    state: AppState,
    panels: Panels,
    requests: Requests,
    history: History,
    dialogs: FileDialogs<DialogPurpose>,
    /// Outcome lines of screenshots, written from the screenshot callback.
    png_status: png::Status,
    /// Every frame's UI time, kept when QUANTSCOPE_FRAME_STATS is set.
    frame_log: Option<Vec<f32>>,
    /// `QUANTSCOPE_SCRIPT` steps, run once the model has opened.
    script: Vec<script::Step>,
    /// The test hook asked for a worker panic.
    panic_asked: std::cell::Cell<bool>,
}

impl QuantscopeApp {
    /// Builds the app and starts opening `model` (or the bundled sample).
    pub fn new(cc: &eframe::CreationContext<'_>, model: Option<PathBuf>) -> Self {
        let settings: Settings =
            cc.storage.and_then(|s| eframe::get_value(s, eframe::APP_KEY)).unwrap_or_default();
        let ctx = cc.egui_ctx.clone();
        let mut app = Self::with_worker(settings, Worker::spawn(move || ctx.request_repaint()));
        let source = match model {
            Some(p) => Source::Path(p),
            None => Source::Bytes { name: SAMPLE_NAME.into(), bytes: SAMPLE_BYTES.to_vec() },
        };
        app.apply(Command::Open(source));
        if let Ok(text) = std::env::var("QUANTSCOPE_SCRIPT") {
            match script::parse(&text) {
                Ok(steps) => app.script = steps,
                Err(e) => app.state.error = Some(e),
            }
        }
        app
    }

    /// Runs the start-up script once the model is open.
    fn run_script(&mut self) {
        if self.script.is_empty() || self.state.model.is_none() || self.state.opening.is_some() {
            return;
        }
        for step in std::mem::take(&mut self.script) {
            match step {
                script::Step::Command(c) => self.apply(c),
                script::Step::Pref(set) => {
                    let mut p = self.state.prefs.clone();
                    set(&mut p);
                    self.apply(Command::SetPrefs(p));
                }
                script::Step::Matrix => {
                    self.panels.sensitivity.table = super::panels::sensitivity::Table::Matrix;
                }
                script::Step::LayerScheme(scheme) => {
                    if let Some(layer) = self.state.selected.clone() {
                        self.apply(Command::SetLayerScheme { layer, scheme, gesture: None });
                    }
                }
            }
        }
    }

    fn with_worker(settings: Settings, worker: Worker) -> Self {
        let backend = if settings.prefs.builtin_file_dialog { Backend::BuiltIn } else { Backend::Auto };
        Self {
            state: AppState::from_settings(settings),
            panels: Panels::default(),
            requests: Requests::new(worker),
            history: History::default(),
            dialogs: FileDialogs::new(backend),
            png_status: png::Status::default(),
            frame_log: std::env::var_os("QUANTSCOPE_FRAME_STATS").map(|_| Vec::new()),
            script: Vec::new(),
            panic_asked: std::cell::Cell::new(false),
        }
    }

    /// What the panels read.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The panels, for tests that look at a panel's own state.
    pub fn panels(&self) -> &Panels {
        &self.panels
    }

    /// Test hook: makes the worker panic once (asked on the next frame).
    pub fn inject_worker_panic(&self) {
        self.panic_asked.set(true);
    }

    /// Sends a request of job `J` (its key and request, as the job builds them).
    fn ask<J: Job>(&mut self, (key, request): (J::Key, J::Request)) {
        self.requests.ask::<J>(&mut self.state, key, request);
    }

    /// Applies one change: the only place the state changes in response to the user.
    pub fn apply(&mut self, cmd: Command) {
        if let Some(label) = cmd.undo_label() {
            let gesture = match &cmd {
                Command::SetLayerScheme { gesture, .. } => *gesture,
                _ => None,
            };
            let before = self.state.doc.clone();
            self.apply_doc(cmd);
            if self.state.doc != before {
                self.history.record(label, before, gesture);
            }
        } else {
            self.apply_other(cmd);
        }
        self.state.undo_label = self.history.undo_label();
        self.state.redo_label = self.history.redo_label();
    }

    /// Changes to the document (recorded for undo by the caller).
    fn apply_doc(&mut self, cmd: Command) {
        let s = &mut self.state;
        let doc = &mut s.doc;
        match cmd {
            Command::SetModelScheme(scheme) => {
                doc.scheme = scheme;
                s.preview = None;
            }
            Command::SetLayerScheme { layer, scheme, .. } => {
                if s.preview.as_ref().is_some_and(|p| p.layer == layer) {
                    s.preview = None;
                }
                doc.overrides.insert(layer, scheme);
            }
            Command::ResetLayer(layer) => {
                doc.overrides.remove(&layer);
            }
            Command::ResetAllLayers => doc.overrides.clear(),
            Command::SetSaveChoice { layer, on } => self.set_save_choice(&layer, on),
            Command::SetCompareSchemes(schemes) => doc.compare_schemes = schemes,
            Command::ApplyPlan { quantize, keep } => self.apply_plan(quantize, &keep),
            Command::SetPercentile(p) => doc.percentile = p,
            Command::ResetDocument => {
                *doc = Doc::default();
                s.preview = None;
            }
            Command::LoadRecipe(path) => self.load_recipe(&path),
            Command::KeepPreview => {
                if let Some(Preview { layer, scheme }) = s.preview.take() {
                    if scheme == doc.scheme {
                        doc.overrides.remove(&layer);
                    } else {
                        doc.overrides.insert(layer, scheme);
                    }
                }
            }
            other => self.apply_other(other),
        }
    }

    fn set_save_choice(&mut self, layer: &str, on: bool) {
        let Some(info) = self.state.model.as_ref().and_then(|m| m.tensor(layer)).cloned() else { return };
        let default_on = quantscope_engine::export::quantized_on_save(&info, None);
        if on == default_on {
            self.state.doc.save_choice.remove(layer);
        } else {
            self.state.doc.save_choice.insert(layer.to_string(), on);
        }
    }

    fn apply_plan(
        &mut self,
        quantize: std::collections::BTreeMap<String, quantscope_engine::Scheme>,
        keep: &[String],
    ) {
        for layer in keep {
            self.state.doc.overrides.remove(layer);
            self.set_save_choice(layer, false);
        }
        for (layer, scheme) in quantize {
            self.set_save_choice(&layer, true);
            if scheme == self.state.doc.scheme {
                self.state.doc.overrides.remove(&layer);
            } else {
                self.state.doc.overrides.insert(layer, scheme);
            }
        }
        self.state.preview = None;
    }

    /// Replaces the model-wide scheme, overrides and save choices with a recipe's.
    fn load_recipe(&mut self, path: &std::path::Path) {
        use quantscope_engine::recipe::Recipe;
        match Recipe::load(path).and_then(|r| r.resolve()) {
            Ok(r) => {
                let doc = &mut self.state.doc;
                doc.scheme = r.scheme;
                doc.overrides = r.overrides();
                doc.save_choice = r.excluded().into_iter().map(|n| (n, false)).collect();
                self.state.preview = None;
                self.state.status = Some(format!("loaded recipe {}", path.display()));
            }
            Err(e) => self.state.error = Some(format!("Could not load the recipe: {e}")),
        }
    }

    /// Navigation, files and background work.
    fn apply_other(&mut self, cmd: Command) {
        let s = &mut self.state;
        match cmd {
            Command::Select(name) => {
                if s.selected.as_deref() != Some(&name) {
                    s.selected = Some(name);
                    s.clicked_value = None;
                    s.teach_slice = 0;
                    s.preview = None;
                }
            }
            Command::SetView(v) => s.view = v,
            Command::PickValue(x) => s.clicked_value = Some(x),
            Command::SetTeachSlice(k) => s.teach_slice = k,
            Command::SetPrefs(p) => {
                if p.builtin_file_dialog != s.prefs.builtin_file_dialog {
                    let backend = if p.builtin_file_dialog { Backend::BuiltIn } else { Backend::Auto };
                    self.dialogs = FileDialogs::new(backend);
                }
                s.prefs = p;
            }
            Command::DismissError => s.error = None,
            Command::Preview { layer, scheme } => {
                s.selected = Some(layer.clone());
                s.clicked_value = None;
                s.teach_slice = 0;
                s.preview = Some(Preview { layer, scheme });
                s.view = super::state::View::Layer;
            }
            Command::EndPreview => s.preview = None,
            Command::Undo => {
                if let Some(doc) = self.history.undo(&s.doc) {
                    s.doc = doc;
                    s.preview = None;
                }
            }
            Command::Redo => {
                if let Some(doc) = self.history.redo(&s.doc) {
                    s.doc = doc;
                    s.preview = None;
                }
            }
            Command::ShowDialog(purpose) => {
                let spec = super::panels::menu::dialog_spec(&purpose);
                self.dialogs.open(purpose, spec);
            }
            Command::DialogDone(outcome) => self.dialog_done(outcome),
            Command::Open(source) => self.ask::<Open>(Open::ask(source)),
            Command::SaveRecipe(path) => self.save_recipe(&path),
            Command::WriteCsv(kind, path) => self.write_csv(kind, &path),
            Command::ShowSaveWindow => self.panels.save.open = true,
            Command::StartSave(r) => self.ask::<Save>(Save::ask(&self.state, &r)),
            Command::CancelSave => self.requests.cancel::<Save>(),
            Command::RunModel(inputs) => self.ask::<Capture>(Capture::run_model(inputs)),
            Command::CancelRun => self.requests.cancel::<Capture>(),
            Command::LoadActivations(path) => self.ask::<Capture>(Capture::load(path)),
            Command::RunEndToEnd(scheme) => {
                if let Some(asked) = EndToEnd::ask(&self.state, scheme) {
                    self.ask::<EndToEnd>(asked);
                }
            }
            Command::CancelEndToEnd => self.requests.cancel::<EndToEnd>(),
            Command::SetLayerTab(tab) => s.activations.tab = tab,
            Command::Compare { original, quantized } => {
                self.ask::<Compare>(Compare::pair(original, quantized));
            }
            Command::CloseComparison => self.ask::<Compare>(Compare::close()),
            Command::Ask(ask) => ask.send(&mut self.requests, &mut self.state),
            Command::ShowPublished(on) => s.compare.show_published = on,
            Command::OpenPublished(layer) => {
                s.selected = Some(layer);
                s.preview = None;
                s.compare.show_published = true;
                s.view = super::state::View::Layer;
            }
            Command::Quit => self.panels.quit_requested = true,
            doc_cmd => self.apply_doc(doc_cmd),
        }
    }

    /// A finished file dialog becomes the command it was opened for.
    fn dialog_done(&mut self, outcome: DialogOutcome<DialogPurpose>) {
        let (purpose, path) = match outcome {
            DialogOutcome::Chosen(p, path) => (p, path),
            DialogOutcome::Cancelled(_) => return,
            DialogOutcome::Failed(_, e) => {
                self.state.error = Some(format!("File dialog: {e}"));
                return;
            }
        };
        match purpose {
            DialogPurpose::OpenFile | DialogPurpose::OpenFolder => {
                self.apply(Command::Open(Source::Path(path)));
            }
            DialogPurpose::SaveOutput => self.panels.save.set_output(&path),
            DialogPurpose::SaveRecipe => self.apply(Command::SaveRecipe(path)),
            DialogPurpose::LoadRecipe => self.apply(Command::LoadRecipe(path)),
            DialogPurpose::LoadActivations => self.apply(Command::LoadActivations(path)),
            DialogPurpose::Csv(kind) => self.apply(Command::WriteCsv(kind, path)),
            DialogPurpose::CompareQuantized { .. } => {
                self.apply(Command::Compare { original: None, quantized: path });
            }
            DialogPurpose::CompareOriginal { .. } => {
                let quantized = self.state.model.as_ref().and_then(|m| m.summary.path.clone());
                match quantized {
                    Some(q) => self.apply(Command::Compare { original: Some(path), quantized: q }),
                    None => self.state.error = Some("the open model has no path to compare".into()),
                }
            }
            DialogPurpose::Png { rect, .. } => self.panels.pending_png = Some((rect, path)),
        }
    }

    fn save_recipe(&mut self, path: &std::path::Path) {
        use quantscope_engine::recipe::Recipe;
        let r = self.state.resolved_recipe();
        let result = Recipe::from_choices(&r.scheme, &r.overrides(), &r.excluded()).save(path);
        match result {
            Ok(()) => self.state.status = Some(format!("saved recipe {}", path.display())),
            Err(e) => self.state.error = Some(format!("Could not save the recipe: {e}")),
        }
    }

    fn write_csv(&mut self, kind: CsvKind, path: &std::path::Path) {
        use quantscope_engine::csv;
        let Some(s) = self.state.sensitivity.result.clone() else { return };
        let text = match kind {
            CsvKind::Matrix => format!("{}\n{}", csv::matrix(&s), csv::totals(&s)),
            CsvKind::Ranked { col } => {
                let order = self.panels.sensitivity.order(&s, col);
                csv::ranked(&s, col, &order)
            }
        };
        match quantscope_engine::write::write_atomic(path, text.as_bytes()) {
            Ok(()) => self.state.status = Some(format!("saved {}", path.display())),
            Err(e) => self.state.error = Some(format!("CSV not saved: {e}")),
        }
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        let typing = ctx.text_edit_focused();
        let (undo, redo, quit) = ctx.input_mut(|i| {
            let redo_keys =
                egui::KeyboardShortcut::new(egui::Modifiers::COMMAND | egui::Modifiers::SHIFT, egui::Key::Z);
            let undo_keys = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::Z);
            let quit_keys = egui::KeyboardShortcut::new(egui::Modifiers::COMMAND, egui::Key::Q);
            // Shift+Ctrl+Z first: consuming Ctrl+Z would also match it.
            let redo = !typing && i.consume_shortcut(&redo_keys);
            let undo = !typing && i.consume_shortcut(&undo_keys);
            (undo, redo, i.consume_shortcut(&quit_keys))
        });
        if redo {
            self.apply(Command::Redo);
        }
        if undo {
            self.apply(Command::Undo);
        }
        if quit {
            self.apply(Command::Quit);
        }
        let dropped = ctx.input(|i| i.raw.dropped_files.first().map(|f| f.path().to_path_buf()));
        if let Some(p) = dropped {
            self.apply(Command::Open(Source::Path(p)));
        }
    }

    fn record_frame(&mut self, started: std::time::Instant) {
        self.state.last_frame_ms = started.elapsed().as_secs_f32() * 1e3;
        if let Some(log) = &mut self.frame_log {
            log.push(self.state.last_frame_ms);
            if log.len() % 250 == 0 {
                print_frame_stats(log);
            }
        }
    }

    fn work_outstanding(&self) -> bool {
        let s = &self.state;
        s.busy
            || s.save.running
            || s.opening.is_some()
            || s.sensitivity.progress.is_some()
            || s.activations.progress.is_some()
            || s.activations.end_to_end.running.is_some()
            || s.model.as_ref().is_some_and(|m| m.sqnr_done < m.sqnr_total)
    }
}

impl eframe::App for QuantscopeApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = std::time::Instant::now();
        let ctx = ui.ctx().clone();
        self.requests.poll(&mut self.state);
        if let Some(line) = self.png_status.lock().ok().and_then(|mut s| s.take()) {
            // A failed write is an error, not a status line: it must not pass unnoticed.
            if line.starts_with("PNG not saved") {
                self.state.error = Some(line);
            } else {
                self.state.status = Some(line);
            }
        }
        self.shortcuts(&ctx);
        self.run_script();

        let mut commands = Vec::new();
        self.panels.ui(&self.state, ui, &mut commands);
        if let Some(outcome) = self.dialogs.ui(&ctx) {
            commands.push(Command::DialogDone(outcome));
        }
        for cmd in commands {
            self.apply(cmd);
        }
        if let Some((rect, path)) = self.panels.pending_png.take() {
            png::request(&ctx, rect, path, &self.png_status);
        }
        if std::mem::take(&mut self.panels.quit_requested) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        if self.panic_asked.take() {
            self.ask::<Panic>(((), ()));
        }
        self.requests.request_work(&mut self.state, self.panels.is_dragging());
        self.record_frame(started);
        if self.work_outstanding() {
            // Keep the spinner and progress bars moving while work is out.
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.state.settings());
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
