//! The UI side of the worker: what has been asked, and what answers still
//! count. Every request carries a generation; one [`InFlight`] record per kind
//! of request says which generation is current and what it asked for, so a
//! stale answer is dropped and an unchanged question is not asked twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use quantscope_engine::export::{ExportMode, ExportOptions};
use quantscope_engine::{Options, Scheme};

use super::command::SaveRequest;
use super::state::LayerTab;
use super::state::{AppState, Model, View};
use super::worker::{
    ActivationRequest, AnalyzeRequest, CaptureRequest, CompareRequest, CompareSummary, EndToEndRequest,
    LoadActivationsRequest, ModelSummary, OutputColumnRequest, OutputRequest, Request, Response, Source,
    StoredRequest, Worker,
};

const WEIGHT_BINS: usize = 400;
const ERROR_BINS: usize = 120;
const MAX_RECENT: usize = 8;
/// Samples of a model run from the GUI (the CLI's default too).
const MAX_SAMPLES: usize = 256;

/// One request kind's newest question: its generation and what it asked.
#[derive(Clone, Debug, PartialEq)]
pub struct InFlight<K> {
    pub generation: u64,
    pub key: K,
    /// Whether the answer (or an error) has arrived.
    pub answered: bool,
}

impl<K: PartialEq> InFlight<K> {
    fn asks(slot: Option<&Self>, key: &K) -> bool {
        slot.is_some_and(|f| f.key == *key)
    }
}

fn current<K>(slot: Option<&InFlight<K>>, generation: u64) -> bool {
    slot.is_some_and(|f| f.generation == generation)
}

/// What the selected tensor's analysis asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisKey {
    pub tensor: String,
    pub scheme: Scheme,
    pub all_calibrations: Option<f64>,
    /// Whether it shows the compared checkpoint's R′, and which checkpoint.
    pub published: Option<(std::path::PathBuf, bool)>,
}

/// What the browser's SQNR column was computed under.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnKey {
    pub scheme: Scheme,
    pub overrides: BTreeMap<String, Scheme>,
}

/// What the selected layer's activation analysis asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationKey {
    pub layer: String,
    pub scheme: Scheme,
    pub percentile: f64,
}

/// What the sensitivity matrix covers.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixKey {
    pub tensors: Vec<String>,
    pub schemes: Vec<Scheme>,
}

/// What the Plan view's output matrix covers, and under which capture.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputKey {
    pub matrix: MatrixKey,
    pub capture: u64,
}

/// The worker and the records of what was asked of it.
pub struct Requests {
    worker: Worker,
    generation: u64,
    open: Option<InFlight<Source>>,
    analysis: Option<InFlight<AnalysisKey>>,
    column: Option<InFlight<ColumnKey>>,
    matrix: Option<InFlight<MatrixKey>>,
    save_cancel: Option<Arc<AtomicBool>>,
    capture: Option<InFlight<Option<std::path::PathBuf>>>,
    capture_cancel: Option<Arc<AtomicBool>>,
    activation: Option<InFlight<ActivationKey>>,
    compare: Option<InFlight<std::path::PathBuf>>,
    /// The stored layer asked for (an open quantized model).
    stored: Option<InFlight<String>>,
    output: Option<InFlight<OutputKey>>,
    end_to_end: Option<InFlight<Scheme>>,
    end_to_end_cancel: Option<Arc<AtomicBool>>,
    /// The output-SQNR column: the scheme choices and the capture it was computed on.
    output_column: Option<InFlight<(ColumnKey, u64)>>,
}

impl Requests {
    pub fn new(worker: Worker) -> Self {
        Self {
            worker,
            generation: 0,
            open: None,
            analysis: None,
            column: None,
            matrix: None,
            save_cancel: None,
            capture: None,
            capture_cancel: None,
            activation: None,
            compare: None,
            stored: None,
            output: None,
            end_to_end: None,
            end_to_end_cancel: None,
            output_column: None,
        }
    }

    fn next_generation(&mut self) -> u64 {
        self.generation += 1;
        self.generation
    }

    /// Opens a model in the background; the current one stays until it succeeds.
    pub fn open(&mut self, state: &mut AppState, source: Source) {
        let generation = self.next_generation();
        state.opening = Some(source_name(&source));
        self.open = Some(InFlight { generation, key: source.clone(), answered: false });
        self.worker.send(Request::Open { generation, source });
    }

    /// Starts a save of the document's choices.
    pub fn save(&mut self, state: &mut AppState, r: &SaveRequest) {
        let cancel = Arc::new(AtomicBool::new(false));
        let options = ExportOptions {
            mode: if r.fake_quant { ExportMode::FakeQuant } else { ExportMode::Packed },
            verify: r.verify,
            force: r.force,
            activations: r.activations,
            ..ExportOptions::default()
        };
        self.save_cancel = Some(Arc::clone(&cancel));
        state.save.running = true;
        state.save.progress = Some((0, 1));
        state.save.result = None;
        let recipe = state.resolved_recipe();
        self.worker.send(Request::Export { recipe, out: r.out.clone(), options, cancel });
    }

    pub fn cancel_save(&self) {
        if let Some(c) = &self.save_cancel {
            c.store(true, Ordering::Relaxed);
        }
    }

    /// Runs the open model over `inputs` (None: the shipped text) and keeps its activations.
    pub fn run_model(&mut self, state: &mut AppState, inputs: Option<std::path::PathBuf>) {
        let generation = self.next_generation();
        let cancel = Arc::new(AtomicBool::new(false));
        self.capture_cancel = Some(Arc::clone(&cancel));
        self.capture = Some(InFlight { generation, key: inputs.clone(), answered: false });
        self.forget_activations(state);
        state.activations.progress = Some((0, MAX_SAMPLES));
        self.worker.send(Request::Capture(CaptureRequest {
            generation,
            inputs,
            max_samples: MAX_SAMPLES,
            cancel,
        }));
    }

    pub fn cancel_run(&self) {
        if let Some(c) = &self.capture_cancel {
            c.store(true, Ordering::Relaxed);
        }
    }

    /// Pairs a quantized checkpoint with the original (the open model, or
    /// `original` opened first).
    pub fn compare(
        &mut self,
        state: &mut AppState,
        original: Option<std::path::PathBuf>,
        quantized: std::path::PathBuf,
    ) {
        let generation = self.next_generation();
        state.compare.pending = Some(source_name(&Source::Path(quantized.clone())));
        self.compare = Some(InFlight { generation, key: quantized.clone(), answered: false });
        self.worker.send(Request::Compare(CompareRequest { generation, original, quantized }));
    }

    pub fn close_comparison(&mut self, state: &mut AppState) {
        self.worker.send(Request::CloseComparison);
        self.compare = None;
        state.compare = super::state::CompareState::default();
        self.forget_model_work(state);
    }

    /// Results that depend on the comparison are asked again.
    fn forget_model_work(&mut self, state: &mut AppState) {
        state.sensitivity = super::state::SensitivityState::default();
        self.analysis = None;
        self.matrix = None;
    }

    fn compared(
        &mut self,
        state: &mut AppState,
        generation: u64,
        result: Result<(Option<ModelSummary>, CompareSummary), String>,
    ) {
        if !current(self.compare.as_ref(), generation) {
            return;
        }
        state.compare.pending = None;
        match result {
            Ok((model, summary)) => {
                if let Some(m) = model {
                    // The original replaced the quantized model: a fresh open.
                    let path = m.path.clone();
                    self.open = Some(InFlight {
                        generation,
                        key: Source::Path(path.unwrap_or_default()),
                        answered: false,
                    });
                    self.opened(state, generation, Ok(m));
                }
                state.status = Some(format!(
                    "comparing with {}: {} layers paired, {} not",
                    summary.name,
                    summary.paired.len(),
                    summary.unpaired.len()
                ));
                state.compare.summary = Some(summary);
                self.forget_model_work(state);
            }
            Err(e) => state.error = Some(format!("Could not compare: {e}")),
        }
    }

    /// Test hook: makes the worker panic once.
    pub fn inject_worker_panic(&self) {
        self.worker.send(Request::Panic);
    }

    /// Applies every answer that has arrived to `state`.
    pub fn poll(&mut self, state: &mut AppState) {
        while let Some(response) = self.worker.try_recv() {
            match response {
                Response::Opened { generation, result } => self.opened(state, generation, result),
                Response::Analyzed { generation, result } => {
                    let is_current = current(self.analysis.as_ref(), generation);
                    if let (true, Some(f)) = (is_current, self.analysis.as_mut()) {
                        f.answered = true;
                    }
                    match result {
                        Ok(a) if is_current => state.analysis = Some(a),
                        Ok(_) => {}
                        Err(e) => state.error = Some(e),
                    }
                }
                Response::SqnrCell { generation, tensor, sqnr_db, done, total } => {
                    if current(self.column.as_ref(), generation)
                        && let Some(m) = &mut state.model
                    {
                        m.sqnr.insert(tensor, sqnr_db);
                        m.sqnr_done = done;
                        m.sqnr_total = total;
                    }
                }
                Response::Exporting { done, total } => {
                    if state.save.running {
                        state.save.progress = Some((done, total));
                    }
                }
                Response::Exported(result) => {
                    self.save_cancel = None;
                    state.save.running = false;
                    state.save.progress = None;
                    if let Ok(s) = &result {
                        state.status = Some(format!("saved {}", s.out.display()));
                    }
                    state.save.result = Some(result);
                }
                r @ (Response::Capturing { .. }
                | Response::Captured { .. }
                | Response::OutputColumn { .. }
                | Response::EndToEndProgress { .. }
                | Response::EndToEnd { .. }
                | Response::ActivationAnalyzed { .. }) => self.run_answer(state, r),
                Response::Compared { generation, result } => self.compared(state, generation, result),
                Response::StoredAnalyzed { generation, result } => {
                    if current(self.stored.as_ref(), generation) {
                        match result {
                            Ok(v) => state.stored_view = Some(v),
                            Err(e) => state.error = Some(e),
                        }
                    }
                }
                r @ (Response::OutputProgress { .. } | Response::OutputDone { .. }) => {
                    self.plan_output_answer(state, r);
                }
                Response::MatrixProgress { generation, done, total } => {
                    if current(self.matrix.as_ref(), generation) {
                        state.sensitivity.progress = Some((done, total));
                    }
                }
                Response::MatrixDone { generation, result } => {
                    if current(self.matrix.as_ref(), generation) {
                        state.sensitivity.progress = None;
                        match result {
                            Ok(s) => {
                                state.sensitivity.result = Some(s);
                                state.sensitivity.error = None;
                            }
                            Err(e) => state.sensitivity.error = Some(e),
                        }
                    }
                }
            }
        }
        state.busy = self.analysis.as_ref().is_some_and(|f| !f.answered);
    }

    /// Answers about the model run: capture, its analyses, the output column, end to end.
    #[allow(clippy::collapsible_match)] // the arms read as in `poll`: kind, then whether it is current
    fn run_answer(&mut self, state: &mut AppState, response: Response) {
        match response {
            Response::Capturing { done, total } => {
                if state.activations.progress.is_some() {
                    state.activations.progress = Some((done, total));
                }
            }
            Response::Captured { generation, result } => {
                if current(self.capture.as_ref(), generation) {
                    let a = &mut state.activations;
                    a.progress = None;
                    self.capture_cancel = None;
                    if let Some(f) = self.capture.as_mut() {
                        f.answered = true;
                    }
                    match result {
                        Ok(c) => a.capture = Some(c),
                        Err(e) => a.error = Some(e),
                    }
                }
            }
            Response::OutputColumn { generation, result } => {
                if current(self.output_column.as_ref(), generation) {
                    match result {
                        Ok(m) => state.activations.output_sqnr = m,
                        Err(e) => state.activations.error = Some(e),
                    }
                }
            }
            Response::EndToEndProgress { .. } | Response::EndToEnd { .. } => {
                self.end_to_end_answer(state, response);
            }
            Response::ActivationAnalyzed { generation, result } => {
                if current(self.activation.as_ref(), generation) {
                    match result {
                        Ok(v) => state.activations.view = Some(v),
                        Err(e) => state.activations.error = Some(e),
                    }
                }
            }
            _ => {}
        }
    }

    /// Answers about the Plan view's output matrix.
    #[allow(clippy::collapsible_match)] // the arms read as in `poll`: kind, then whether it is current
    fn plan_output_answer(&mut self, state: &mut AppState, response: Response) {
        match response {
            Response::OutputProgress { generation, done, total } => {
                if current(self.output.as_ref(), generation) {
                    state.plan_output.progress = Some((done, total));
                }
            }
            Response::OutputDone { generation, result } => {
                if current(self.output.as_ref(), generation) {
                    let o = &mut state.plan_output;
                    o.progress = None;
                    (o.result, o.error) = match result {
                        Ok(r) => (Some(r), None),
                        Err(e) => (None, Some(e)),
                    };
                }
            }
            _ => {}
        }
    }

    fn opened(
        &mut self,
        state: &mut AppState,
        generation: u64,
        result: Result<super::worker::ModelSummary, String>,
    ) {
        if !current(self.open.as_ref(), generation) {
            return;
        }
        let source = self.open.take().map(|f| f.key);
        state.opening = None;
        let summary = match result {
            Ok(s) => s,
            Err(e) => {
                state.error = Some(format!("Could not open: {e}"));
                return;
            }
        };
        // Only a model that opened goes on the Recent list.
        if let Some(Source::Path(p)) = source {
            state.recent.retain(|r| *r != p);
            state.recent.insert(0, p);
            state.recent.truncate(MAX_RECENT);
        }
        // Start on the first layer a save would quantize, in name order (the
        // browser's), not on a huge embedding; in a quantized checkpoint, on its
        // first stored layer.
        let first = |pick: &dyn Fn(&quantscope_engine::TensorInfo) -> bool| {
            summary.tensors.iter().filter(|t| pick(t)).map(|t| t.name.clone()).min()
        };
        let stored_first =
            summary.stored.as_ref().and_then(|s| s.layers.iter().map(|l| l.tensors[0].clone()).min());
        state.selected = stored_first
            .or_else(|| first(&|t| state.quantized_on_save(t)))
            .or_else(|| first(&|t| t.is_quantizable() && t.shape.len() >= 2));
        // Opening a quantized checkpoint over an original offers to compare them.
        let offer_original = state
            .model
            .as_ref()
            .filter(|m| m.summary.stored.is_none() && summary.stored.is_some())
            .and_then(|m| m.summary.path.clone());
        state.model = Some(Model { summary, sqnr: HashMap::new(), sqnr_done: 0, sqnr_total: 0 });
        state.preview = None;
        state.analysis = None;
        state.clicked_value = None;
        state.teach_slice = 0;
        state.sensitivity = super::state::SensitivityState::default();
        state.plan_output = super::state::PlanOutputState::default();
        state.activations =
            super::state::ActivationsState { tab: state.activations.tab, ..Default::default() };
        state.compare = super::state::CompareState { offer_original, ..Default::default() };
        state.stored_view = None;
        self.compare = None;
        self.stored = None;
        state.error = None;
        self.capture = None;
        self.activation = None;
        self.end_to_end = None;
        self.output_column = None;
        self.analysis = None;
        self.column = None;
        self.matrix = None;
        self.output = None;
    }

    /// Sends the analysis, SQNR column and matrix the state calls for, unless
    /// the same question is already out. While a range is dragged the SQNR
    /// column waits.
    pub fn request_work(&mut self, state: &mut AppState, dragging: bool) {
        let Some(model) = &state.model else { return };
        if let Some(name) = state.selected.clone()
            && model.tensor(&name).is_some_and(quantscope_engine::TensorInfo::is_quantizable)
        {
            let key = AnalysisKey {
                tensor: name.clone(),
                scheme: state.scheme_for(&name),
                all_calibrations: state.prefs.show_all_calibrations.then_some(state.doc.percentile),
                published: state
                    .compare
                    .summary
                    .as_ref()
                    .map(|c| (c.path.clone(), state.compare.show_published)),
            };
            if !InFlight::asks(self.analysis.as_ref(), &key) {
                let generation = self.next_generation();
                self.worker.send(Request::Analyze(AnalyzeRequest {
                    generation,
                    tensor: key.tensor.clone(),
                    scheme: key.scheme,
                    options: Options {
                        weight_bins: WEIGHT_BINS,
                        error_bins: ERROR_BINS,
                        ..Options::default()
                    },
                    all_calibrations: key.all_calibrations,
                    show_published: key.published.as_ref().is_some_and(|p| p.1),
                }));
                self.analysis = Some(InFlight { generation, key, answered: false });
            }
        }
        self.request_activation(state);
        self.request_stored(state);
        self.request_output(state);
        self.request_output_column(state, dragging);
        if matches!(state.view, View::Sensitivity | View::Plan) {
            let tensors = if state.view == View::Plan { state.plan_layers() } else { state.saved_layers() };
            let key = MatrixKey { tensors, schemes: state.doc.compare_schemes.clone() };
            if !InFlight::asks(self.matrix.as_ref(), &key) {
                let generation = self.next_generation();
                self.worker.send(Request::SensitivityMatrix {
                    generation,
                    tensors: key.tensors.clone(),
                    schemes: key.schemes.clone(),
                });
                state.sensitivity.progress = Some((0, key.tensors.len()));
                self.matrix = Some(InFlight { generation, key, answered: false });
            }
        }
        let key = ColumnKey { scheme: state.doc.scheme, overrides: state.doc.overrides.clone() };
        if !dragging && !InFlight::asks(self.column.as_ref(), &key) {
            let generation = self.next_generation();
            self.worker.send(Request::SqnrColumn {
                generation,
                schemes: key.overrides.clone(),
                default: key.scheme,
            });
            if let Some(m) = &mut state.model {
                m.sqnr_done = 0;
                m.sqnr_total = m.summary.tensors.iter().filter(|t| t.is_quantizable()).count();
            }
            self.column = Some(InFlight { generation, key, answered: false });
        }
        state.busy = self.analysis.as_ref().is_some_and(|f| !f.answered);
    }
}

impl Requests {
    /// The selected stored layer of an open quantized model.
    fn request_stored(&mut self, state: &AppState) {
        let Some(layer) = state.selected_stored().map(|l| l.name.clone()) else { return };
        if !InFlight::asks(self.stored.as_ref(), &layer) {
            let generation = self.next_generation();
            self.worker.send(Request::AnalyzeStored(StoredRequest { generation, layer: layer.clone() }));
            self.stored = Some(InFlight { generation, key: layer, answered: false });
        }
    }

    /// In the Plan view, once the model has run: the output SQNR of every
    /// planned layer × candidate (the `output` objective), computed in the
    /// background so the objective is ready when picked.
    fn request_output(&mut self, state: &mut AppState) {
        let Some(capture) = self.capture.as_ref().filter(|_| state.activations.capture.is_some()) else {
            return;
        };
        if state.view != View::Plan {
            return;
        }
        let matrix = MatrixKey { tensors: state.plan_layers(), schemes: state.doc.compare_schemes.clone() };
        let key = OutputKey { matrix, capture: capture.generation };
        if !InFlight::asks(self.output.as_ref(), &key) {
            let generation = self.next_generation();
            self.worker.send(Request::OutputMatrix(OutputRequest {
                generation,
                layers: key.matrix.tensors.clone(),
                schemes: key.matrix.schemes.clone(),
            }));
            state.plan_output.progress = Some((0, key.matrix.tensors.len()));
            state.plan_output.error = None;
            self.output = Some(InFlight { generation, key, answered: false });
        }
    }

    /// Drops the current activations and everything derived from them (a new
    /// capture or a loaded one replaces them).
    fn forget_activations(&mut self, state: &mut AppState) {
        self.cancel_end_to_end();
        self.activation = None;
        self.end_to_end = None;
        self.output_column = None;
        let a = &mut state.activations;
        (a.progress, a.capture, a.view, a.error) = (None, None, None, None);
        a.end_to_end = super::state::EndToEndState::default();
        a.output_sqnr.clear();
        // The Plan view's output matrix was computed on the old capture.
        self.output = None;
        state.plan_output = super::state::PlanOutputState::default();
    }

    /// Uses a capture saved by `quantscope activations` instead of running the model.
    pub fn load_activations(&mut self, state: &mut AppState, path: std::path::PathBuf) {
        let generation = self.next_generation();
        self.capture = Some(InFlight { generation, key: Some(path.clone()), answered: false });
        self.capture_cancel = None;
        self.forget_activations(state);
        state.activations.progress = Some((0, 1));
        self.worker.send(Request::LoadActivations(LoadActivationsRequest { generation, path }));
    }

    /// Every captured layer a save quantizes, quantized alone under `scheme` and run
    /// end to end; a scheme already run is shown from the cache.
    pub fn run_end_to_end(&mut self, state: &mut AppState, scheme: Scheme) {
        let Some(capture) = &state.activations.capture else { return };
        let saved = state.saved_layers();
        let layers: Vec<String> = capture.layers.iter().filter(|l| saved.contains(l)).cloned().collect();
        let e = &mut state.activations.end_to_end;
        if e.results.contains_key(&scheme.to_string()) || e.running.is_some() {
            return;
        }
        let generation = self.next_generation();
        let cancel = Arc::new(AtomicBool::new(false));
        self.end_to_end_cancel = Some(Arc::clone(&cancel));
        self.end_to_end = Some(InFlight { generation, key: scheme, answered: false });
        (e.running, e.error) = (Some((scheme, 0, layers.len() + 1)), None);
        self.worker.send(Request::EndToEnd(EndToEndRequest { generation, scheme, layers, cancel }));
    }

    pub fn cancel_end_to_end(&self) {
        if let Some(c) = &self.end_to_end_cancel {
            c.store(true, Ordering::Relaxed);
        }
    }

    fn end_to_end_answer(&mut self, state: &mut AppState, response: Response) {
        let e = &mut state.activations.end_to_end;
        match response {
            Response::EndToEndProgress { generation, done, total } => {
                if let (true, Some((scheme, ..))) = (current(self.end_to_end.as_ref(), generation), e.running)
                {
                    e.running = Some((scheme, done, total));
                }
            }
            Response::EndToEnd { generation, scheme, result } => {
                if !current(self.end_to_end.as_ref(), generation) {
                    return;
                }
                (self.end_to_end, self.end_to_end_cancel, e.running) = (None, None, None);
                match result {
                    Ok(r) => {
                        e.results.insert(scheme.to_string(), r);
                    }
                    Err(err) => e.error = Some(err),
                }
            }
            _ => {}
        }
    }

    /// The browser's output-SQNR column, once a capture is there (waits while a range is dragged).
    fn request_output_column(&mut self, state: &AppState, dragging: bool) {
        let (Some(capture), false) = (self.capture.as_ref().filter(|c| c.answered), dragging) else { return };
        if state.activations.capture.is_none() {
            return;
        }
        let key = (
            ColumnKey { scheme: state.doc.scheme, overrides: state.doc.overrides.clone() },
            capture.generation,
        );
        if !InFlight::asks(self.output_column.as_ref(), &key) {
            let generation = self.next_generation();
            self.worker.send(Request::OutputColumn(OutputColumnRequest {
                generation,
                schemes: key.0.overrides.clone(),
                default: key.0.scheme,
            }));
            self.output_column = Some(InFlight { generation, key, answered: false });
        }
    }

    /// The selected layer's input analysis, when its tab shows and a capture has its input.
    fn request_activation(&mut self, state: &AppState) {
        let a = &state.activations;
        let (Some(layer), Some(capture)) = (state.selected.clone(), a.capture.as_ref()) else { return };
        if state.view != View::Layer || a.tab != LayerTab::Activations || !capture.layers.contains(&layer) {
            return;
        }
        let key = ActivationKey { scheme: state.scheme_for(&layer), layer, percentile: state.doc.percentile };
        if !InFlight::asks(self.activation.as_ref(), &key) {
            let generation = self.next_generation();
            self.worker.send(Request::AnalyzeActivation(ActivationRequest {
                generation,
                layer: key.layer.clone(),
                scheme: key.scheme,
                percentile: key.percentile,
            }));
            self.activation = Some(InFlight { generation, key, answered: false });
        }
    }
}

/// The name shown while a source opens.
pub fn source_name(source: &Source) -> String {
    match source {
        Source::Path(p) => {
            p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into())
        }
        Source::Bytes { name, .. } => name.clone(),
    }
}
