//! The one bridge between the engine and the UI: a background thread that owns
//! the open checkpoint, decodes and analyzes tensors (rayon inside), and sends
//! results back. The UI thread never decodes or quantizes a tensor.
//!
//! Staleness: every request carries a generation. The worker drains its queue
//! before each job and keeps only the newest analyze request, so dragging a
//! range line never builds a backlog. The SQNR column and the sensitivity matrix
//! run one tensor per turn and are dropped as soon as a newer request or model
//! arrives. Each job runs under
//! `catch_unwind`, so a panic becomes an error message and the worker lives on.
//! A save runs here too (one tensor at a time, with progress), so the UI thread
//! never writes a model; analyses asked for meanwhile wait for it to finish.

mod plan;
mod published;
mod run;

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::time::Instant;

use quantscope_engine::calibrate::hqq::{HqqSlice, hqq_tensor};
use quantscope_engine::export::{self, ExportOptions, ExportSummary};
use quantscope_engine::planner::output::OutputSqnr;
use quantscope_engine::quantized::QuantizedModel;
use quantscope_engine::quantized::view::{Published, StoredView};
use quantscope_engine::recipe::Resolved;
use quantscope_engine::run::sensitivity::SensitivityReport;
use quantscope_engine::sweep;
use quantscope_engine::{
    Calibration, Checkpoint, Metrics, Options, QuantResult, Scheme, SliceParams, TensorInfo, WorkDtype,
    analyze, compare_calibrations,
};

pub use plan::OutputRequest;
pub use published::{
    CompareRequest, CompareSummary, PUBLISHED_COLUMN, StoredLayerInfo, StoredRequest, StoredSummary,
};
pub use run::{
    ActivationRequest, ActivationView, CaptureRequest, CaptureSummary, EndToEndRequest,
    LoadActivationsRequest, OutputColumnRequest,
};

/// Where a model comes from.
#[derive(Clone, Debug)]
pub enum Source {
    Path(PathBuf),
    /// Bytes in memory (the embedded teaching sample), with a display name.
    Bytes {
        name: String,
        bytes: Vec<u8>,
    },
}

pub struct AnalyzeRequest {
    pub generation: u64,
    pub tensor: String,
    pub scheme: Scheme,
    pub options: Options,
    /// Also compute every calibration's clip range, percentile at this p.
    pub all_calibrations: Option<f64>,
    /// Show the compared checkpoint's published R′ instead of the scheme's.
    pub show_published: bool,
}

pub enum Request {
    Open {
        generation: u64,
        source: Source,
    },
    Analyze(AnalyzeRequest),
    /// The browser's SQNR column: every quantizable tensor, each under its own scheme.
    SqnrColumn {
        generation: u64,
        schemes: BTreeMap<String, Scheme>,
        default: Scheme,
    },
    /// Save the quantized model. Runs to the end (or until `cancel`), sending
    /// `Exporting` progress and then `Exported`.
    Export {
        recipe: Resolved,
        out: PathBuf,
        options: ExportOptions,
        cancel: Arc<AtomicBool>,
    },
    /// The layers × schemes matrix of the sensitivity view, one tensor per turn.
    SensitivityMatrix {
        generation: u64,
        tensors: Vec<String>,
        schemes: Vec<Scheme>,
    },
    /// Run the model over the inputs and keep every Linear input's statistics
    /// (sends `Capturing` progress, then `Captured`).
    Capture(CaptureRequest),
    /// One layer's input activations under a scheme (needs a capture).
    AnalyzeActivation(ActivationRequest),
    /// Pair a quantized checkpoint with the original (File → Compare with…).
    Compare(CompareRequest),
    /// Drop the compared checkpoint.
    CloseComparison,
    /// One stored layer of the open quantized model, alone.
    AnalyzeStored(StoredRequest),
    /// The Plan view's `output` objective: layers × schemes output SQNR over the
    /// capture, one layer per turn (`OutputProgress`, then `OutputDone`).
    OutputMatrix(OutputRequest),
    /// Test hook: panics inside the worker, to prove the worker survives it.
    Panic,
    /// Open a saved capture (answered as `Captured`).
    LoadActivations(LoadActivationsRequest),
    /// End-to-end sensitivity under one scheme (cancellable, with progress).
    EndToEnd(EndToEndRequest),
    /// Output SQNR of every captured layer under its scheme (the browser's column).
    OutputColumn(OutputColumnRequest),
}

/// What the UI needs to know about an opened model.
pub struct ModelSummary {
    pub name: String,
    pub path: Option<PathBuf>,
    pub tensors: Vec<TensorInfo>,
    pub size_bytes: usize,
    /// The model's quantized layers, when someone else quantized it.
    pub stored: Option<StoredSummary>,
}

/// One finished analysis.
pub struct Analysis {
    pub tensor: String,
    pub shape: Vec<usize>,
    pub result: QuantResult,
    /// Where every calibration method would clip (the all-methods overlay).
    pub calibration_ranges: Vec<(Calibration, SliceParams)>,
    /// Under HQQ: each slice's real-valued zero point and what rounding it costs.
    pub hqq: Vec<HqqSlice>,
    /// The compared checkpoint's quantization of this layer, when it has one.
    pub published: Option<Arc<Published>>,
    /// Whether `result` is the published quantization (else the scheme's).
    pub showing_published: bool,
    /// The scheme's metrics (equal to `result.metrics` unless it shows the published R′).
    pub scheme_metrics: Metrics,
    pub elapsed_ms: f64,
}

pub enum Response {
    Opened { generation: u64, result: Result<ModelSummary, String> },
    Analyzed { generation: u64, result: Result<Arc<Analysis>, String> },
    SqnrCell { generation: u64, tensor: String, sqnr_db: Option<f64>, done: usize, total: usize },
    Exporting { done: u64, total: u64 },
    MatrixProgress { generation: u64, done: usize, total: usize },
    MatrixDone { generation: u64, result: Result<Arc<sweep::Sweep>, String> },
    Exported(Result<ExportSummary, String>),
    Capturing { done: usize, total: usize },
    Captured { generation: u64, result: Result<CaptureSummary, String> },
    ActivationAnalyzed { generation: u64, result: Result<Arc<ActivationView>, String> },
    Compared { generation: u64, result: Result<(Option<ModelSummary>, CompareSummary), String> },
    StoredAnalyzed { generation: u64, result: Result<Arc<StoredView>, String> },
    OutputProgress { generation: u64, done: usize, total: usize },
    OutputDone { generation: u64, result: Result<Arc<OutputSqnr>, String> },
    EndToEndProgress { generation: u64, done: usize, total: usize },
    EndToEnd { generation: u64, scheme: Scheme, result: Result<Arc<SensitivityReport>, String> },
    OutputColumn { generation: u64, result: Result<HashMap<String, f64>, String> },
}

/// The UI's handle on the worker thread.
pub struct Worker {
    tx: SyncSender<Request>,
    rx: Receiver<Response>,
}

impl Worker {
    /// Starts the thread. `repaint` is called after every response (the app passes
    /// `ctx.request_repaint`).
    pub fn spawn(repaint: impl Fn() + Send + 'static) -> Self {
        let (tx, requests) = sync_channel::<Request>(256);
        let (responses, rx) = sync_channel::<Response>(4096);
        // One core stays free for the UI thread, so frames keep their pace while
        // the engine is saturated (on 2 cores the engine gets one).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("quantscope-engine-{i}"))
            .build()
            .ok();
        std::thread::Builder::new()
            .name("quantscope-worker".into())
            .spawn(move || {
                let run = move || WorkerState::default().run(&requests, &responses, &repaint);
                match pool {
                    Some(pool) => pool.install(run),
                    None => run(),
                }
            })
            .map_or_else(|e| panic!("cannot start the engine thread: {e}"), |_| ());
        Self { tx, rx }
    }

    pub fn send(&self, request: Request) {
        // A closed channel means the worker is gone; the UI shows no new results.
        let _ = self.tx.send(request);
    }

    pub fn try_recv(&self) -> Option<Response> {
        self.rx.try_recv().ok()
    }
}

struct SqnrColumnJob {
    generation: u64,
    names: Vec<String>,
    schemes: BTreeMap<String, Scheme>,
    default: Scheme,
    next: usize,
}

struct MatrixJob {
    generation: u64,
    tensors: Vec<usize>,
    schemes: Vec<Scheme>,
    rows: Vec<sweep::Row>,
}

#[derive(Default)]
struct WorkerState {
    ckpt: Option<Arc<Checkpoint>>,
    /// The most recently decoded tensor: re-analysis under a new scheme reuses it.
    decoded: Option<(String, Arc<Vec<f32>>)>,
    sqnr_column: Option<SqnrColumnJob>,
    matrix: Option<MatrixJob>,
    /// Decode buffer reused by sweeps (fresh buffers cost page faults).
    scratch: Vec<f32>,
    /// The open model's captured activations.
    activations: Option<Arc<quantscope_engine::run::Activations>>,
    /// The open model's own quantized layers (someone else quantized it).
    stored: Option<Arc<QuantizedModel>>,
    /// A quantized checkpoint paired with the open original.
    published: Option<Arc<QuantizedModel>>,
    /// The newest published layer against its original.
    published_cache: Option<(String, Arc<Published>)>,
    /// The Plan view's output matrix in progress.
    output: Option<plan::OutputJob>,
    /// The model and float outputs the end-to-end runs of these activations share.
    run_cache: Option<run::RunCache>,
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl WorkerState {
    fn run(mut self, requests: &Receiver<Request>, responses: &SyncSender<Response>, repaint: &dyn Fn()) {
        loop {
            // Block only when no column or matrix work is left.
            let mut pending: Vec<Request> = Vec::new();
            if self.sqnr_column.is_none() && self.matrix.is_none() && self.output.is_none() {
                match requests.recv() {
                    Ok(r) => pending.push(r),
                    Err(_) => return,
                }
            }
            loop {
                match requests.try_recv() {
                    Ok(r) => pending.push(r),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            let mut latest_analyze = None;
            for request in pending {
                match request {
                    Request::Analyze(a) => latest_analyze = Some(a),
                    other => self.handle(other, responses),
                }
            }
            if let Some(a) = latest_analyze {
                let generation = a.generation;
                let result = catch_unwind(AssertUnwindSafe(|| self.analyze(&a))).unwrap_or_else(|p| {
                    Err(format!("internal error while analyzing: {}", panic_message(&*p)))
                });
                let _ = responses.send(Response::Analyzed { generation, result });
            } else if self.matrix.is_some() {
                self.matrix_step(responses);
            } else if self.output.is_some() {
                self.output_step(responses);
            } else {
                self.sqnr_column_step(responses);
            }
            repaint();
        }
    }

    fn handle(&mut self, request: Request, responses: &SyncSender<Response>) {
        match request {
            Request::Open { generation, source } => {
                let result = catch_unwind(AssertUnwindSafe(|| open(source)))
                    .unwrap_or_else(|p| Err(format!("internal error while opening: {}", panic_message(&*p))));
                let result = result.map(|(ckpt, mut summary)| {
                    // Only a successful open replaces the current model.
                    self.replace_model(ckpt);
                    if let Some((q, stored)) = summary.path.as_deref().and_then(published::detect) {
                        summary.stored = Some(stored);
                        self.stored = Some(Arc::new(q));
                    }
                    summary
                });
                let _ = responses.send(Response::Opened { generation, result });
            }
            Request::Compare(r) => {
                let result = catch_unwind(AssertUnwindSafe(|| self.compare(&r))).unwrap_or_else(|p| {
                    Err(format!("internal error while comparing: {}", panic_message(&*p)))
                });
                let _ = responses.send(Response::Compared { generation: r.generation, result });
            }
            Request::CloseComparison => (self.published, self.published_cache) = (None, None),
            Request::AnalyzeStored(r) => {
                let result = catch_unwind(AssertUnwindSafe(|| self.stored_view(&r)))
                    .unwrap_or_else(|p| Err(format!("internal error while reading: {}", panic_message(&*p))));
                let _ = responses.send(Response::StoredAnalyzed { generation: r.generation, result });
            }
            Request::SqnrColumn { generation, schemes, default } => {
                let names = self.ckpt.as_ref().map_or_else(Vec::new, |c| {
                    c.tensors().iter().filter(|t| t.is_quantizable()).map(|t| t.name.clone()).collect()
                });
                self.sqnr_column = Some(SqnrColumnJob { generation, names, schemes, default, next: 0 });
            }
            Request::Export { recipe, out, options, cancel } => {
                let result = catch_unwind(AssertUnwindSafe(|| {
                    let ckpt = self.ckpt.as_ref().ok_or("no model is open")?;
                    let decisions = export::plan(ckpt.tensors(), &recipe, &|_| false);
                    let progress = |done, total| {
                        let _ = responses.try_send(Response::Exporting { done, total });
                    };
                    export::export(ckpt, &decisions, &out, &options, &progress, &cancel)
                        .map_err(|e| e.to_string())
                }))
                .unwrap_or_else(|p| Err(format!("internal error while saving: {}", panic_message(&*p))));
                let _ = responses.send(Response::Exported(result));
            }
            Request::SensitivityMatrix { generation, tensors, schemes } => {
                let tensors = self.ckpt.as_ref().map_or_else(Vec::new, |c| {
                    let all = c.tensors();
                    tensors.iter().filter_map(|n| all.iter().position(|t| &t.name == n)).collect()
                });
                // A newer request replaces a running one.
                self.matrix = Some(MatrixJob { generation, tensors, schemes, rows: Vec::new() });
            }
            Request::Capture(r) => {
                let result =
                    catch_unwind(AssertUnwindSafe(|| self.capture(&r, responses))).unwrap_or_else(|p| {
                        Err(format!("internal error while running the model: {}", panic_message(&*p)))
                    });
                let _ = responses.send(Response::Captured { generation: r.generation, result });
            }
            Request::AnalyzeActivation(r) => {
                let result =
                    catch_unwind(AssertUnwindSafe(|| self.analyze_activation(&r))).unwrap_or_else(|p| {
                        Err(format!("internal error while analyzing activations: {}", panic_message(&*p)))
                    });
                let _ = responses.send(Response::ActivationAnalyzed { generation: r.generation, result });
            }
            Request::OutputMatrix(r) => self.start_output(r, responses),
            Request::LoadActivations(r) => {
                let result = catch_unwind(AssertUnwindSafe(|| self.load_activations(&r)))
                    .unwrap_or_else(|p| Err(format!("internal error while loading: {}", panic_message(&*p))));
                let _ = responses.send(Response::Captured { generation: r.generation, result });
            }
            Request::EndToEnd(r) => {
                let result = catch_unwind(AssertUnwindSafe(|| self.end_to_end(&r, responses)))
                    .unwrap_or_else(|p| Err(format!("internal error while running: {}", panic_message(&*p))));
                let _ =
                    responses.send(Response::EndToEnd { generation: r.generation, scheme: r.scheme, result });
            }
            Request::OutputColumn(r) => {
                let result = catch_unwind(AssertUnwindSafe(|| self.output_column(&r))).unwrap_or_else(|p| {
                    Err(format!("internal error in the output SQNR: {}", panic_message(&*p)))
                });
                let _ = responses.send(Response::OutputColumn { generation: r.generation, result });
            }
            Request::Panic => {
                let r = catch_unwind(|| panic!("test panic inside the worker"));
                let msg = r.err().map(|p| panic_message(&*p)).unwrap_or_default();
                let _ = responses.send(Response::Analyzed {
                    generation: u64::MAX,
                    result: Err(format!("internal error while analyzing: {msg}")),
                });
            }
            Request::Analyze(_) => {}
        }
    }

    /// Makes `ckpt` the open model, dropping everything computed for the old one.
    fn replace_model(&mut self, ckpt: Checkpoint) {
        self.ckpt = Some(Arc::new(ckpt));
        self.decoded = None;
        self.sqnr_column = None;
        self.matrix = None;
        self.activations = None;
        self.run_cache = None;
        self.output = None;
        self.stored = None;
        self.published = None;
        self.published_cache = None;
    }

    fn values(&mut self, name: &str) -> Result<Arc<Vec<f32>>, String> {
        if let Some((n, v)) = &self.decoded
            && n == name
        {
            return Ok(Arc::clone(v));
        }
        let ckpt = self.ckpt.as_ref().ok_or("no model is open")?;
        let v = Arc::new(ckpt.load_f32(name).map_err(|e| e.to_string())?);
        self.decoded = Some((name.to_string(), Arc::clone(&v)));
        Ok(v)
    }

    fn analyze(&mut self, a: &AnalyzeRequest) -> Result<Arc<Analysis>, String> {
        let started = Instant::now();
        let info =
            self.ckpt.as_ref().ok_or("no model is open")?.tensor(&a.tensor).map_err(|e| e.to_string())?;
        let (shape, work) = (info.shape.clone(), WorkDtype::of(info.dtype));
        let values = self.values(&a.tensor)?;
        // The tensor's own dtype is the working dtype, and fused siblings share a
        // two-level format's global scale: the numbers a save writes.
        let ckpt = self.ckpt.as_ref().ok_or("no model is open")?;
        let global_amax =
            quantscope_engine::fused::shared_global_amax(ckpt, &a.tensor, &a.scheme, &|_| Some(a.scheme))
                .map_err(|e| e.to_string())?;
        let options = Options { work, global_amax, ..a.options };
        let result = analyze(&values, &shape, &a.scheme, &options).map_err(|e| e.to_string())?;
        let calibration_ranges = match a.all_calibrations {
            Some(p) => compare_calibrations(&values, &a.scheme, p, work).map_err(|e| e.to_string())?,
            None => Vec::new(),
        };
        let hqq = if a.scheme.calibration == Calibration::Hqq {
            hqq_tensor(&values, &shape, &a.scheme).map_err(|e| e.to_string())?
        } else {
            Vec::new()
        };
        let published = self.published_of(&a.tensor, &values, a.options.weight_bins, a.options.error_bins)?;
        let scheme_metrics = result.metrics;
        let (result, showing_published) = match &published {
            Some(p) if a.show_published => (p.result.clone(), true),
            _ => (result, false),
        };
        Ok(Arc::new(Analysis {
            tensor: a.tensor.clone(),
            shape,
            result,
            calibration_ranges,
            hqq,
            published,
            showing_published,
            scheme_metrics,
            elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
        }))
    }

    fn sqnr_column_step(&mut self, responses: &SyncSender<Response>) {
        let (Some(job), Some(ckpt)) = (self.sqnr_column.as_mut(), self.ckpt.as_ref()) else {
            self.sqnr_column = None;
            return;
        };
        let Some(name) = job.names.get(job.next).cloned() else {
            self.sqnr_column = None;
            return;
        };
        job.next += 1;
        let scheme = job.schemes.get(&name).copied().unwrap_or(job.default);
        let ckpt = Arc::clone(ckpt);
        let scratch = &mut self.scratch;
        let sqnr_db = catch_unwind(AssertUnwindSafe(|| {
            let info = ckpt.tensor(&name).ok()?;
            // The same single-scheme path as the sensitivity sweep.
            let row = sweep::sweep_tensor(&ckpt, info, &[scheme], scratch);
            ckpt.release(info);
            row.cells.into_iter().next()?.ok().map(|c| c.metrics.sqnr_db)
        }))
        .ok()
        .flatten();
        let _ = responses.send(Response::SqnrCell {
            generation: job.generation,
            tensor: name,
            sqnr_db,
            done: job.next,
            total: job.names.len(),
        });
    }
}

impl WorkerState {
    /// One tensor of the sensitivity matrix; the totals once all are done.
    fn matrix_step(&mut self, responses: &SyncSender<Response>) {
        let (Some(job), Some(ckpt)) = (self.matrix.as_mut(), self.ckpt.as_ref()) else {
            self.matrix = None;
            return;
        };
        let generation = job.generation;
        let total = job.tensors.len();
        let compared = self.published.clone();
        if let Some(&i) = job.tensors.get(job.rows.len()) {
            let info = &ckpt.tensors()[i];
            let scratch = &mut self.scratch;
            let row =
                catch_unwind(AssertUnwindSafe(|| sweep::sweep_tensor(ckpt, info, &job.schemes, scratch)));
            match row {
                Ok(mut row) => {
                    // The compared checkpoint's quantization is one more column.
                    if let Some(q) = &compared {
                        let values = ckpt.values(info, scratch).map_err(|e| e.to_string());
                        row.cells.push(values.and_then(|v| published::published_cell(q, &info.name, v)));
                    }
                    job.rows.push(row);
                }
                Err(p) => {
                    let msg = format!("internal error while comparing {}: {}", info.name, panic_message(&*p));
                    self.matrix = None;
                    let _ = responses.send(Response::MatrixDone { generation, result: Err(msg) });
                    return;
                }
            }
            ckpt.release(info);
            let _ = responses.try_send(Response::MatrixProgress { generation, done: job.rows.len(), total });
        }
        if job.rows.len() == total {
            let tensors = std::mem::take(&mut job.tensors);
            let schemes = std::mem::take(&mut job.schemes);
            let rows = std::mem::take(&mut job.rows);
            self.matrix = None;
            let mut labels: Vec<String> = schemes.iter().map(ToString::to_string).collect();
            if compared.is_some() {
                labels.push(published::PUBLISHED_COLUMN.to_string());
            }
            let result = sweep::finish_labelled(ckpt, &tensors, &labels, rows);
            let _ = responses.send(Response::MatrixDone { generation, result: Ok(Arc::new(result)) });
        }
    }
}

fn open(source: Source) -> Result<(Checkpoint, ModelSummary), String> {
    let (ckpt, name, path) = match source {
        Source::Path(p) => {
            let c = Checkpoint::open(&p).map_err(|e| e.to_string())?;
            let name =
                p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned());
            (c, name, Some(p))
        }
        Source::Bytes { name, bytes } => {
            (Checkpoint::from_bytes(&name, bytes).map_err(|e| e.to_string())?, name, None)
        }
    };
    let summary = ModelSummary {
        name,
        path,
        tensors: ckpt.tensors().to_vec(),
        size_bytes: ckpt.size_bytes(),
        stored: None,
    };
    Ok((ckpt, summary))
}
