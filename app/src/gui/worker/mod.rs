//! The one bridge between the engine and the UI: a background thread that owns
//! the open checkpoint, runs jobs on it (rayon inside), and sends their answers
//! back. The UI thread never decodes or quantizes a tensor.
//!
//! Every background job is one type implementing [`Job`], in one file under
//! [`jobs`]: its request and answer types, what its answer depends on
//! ([`Deps`]), how it runs here ([`Job::run`]) and how its answer lands in the
//! [`AppState`] ([`Job::apply`]). The UI side keeps one [`Slot`] per job (the
//! newest request's generation and key); invalidating a dependency clears every
//! slot whose job declares it and has the job forget what it showed.
//!
//! Scheduling: every request carries a generation. The worker drains its queue
//! before each turn and runs [`Runs::Once`] jobs in order; of a
//! [`Runs::Newest`] job (the analysis) only the newest request is run, so
//! dragging a range line never builds a backlog; a [`Runs::Stream`] job (the
//! SQNR column, the sensitivity matrix) runs one tensor per turn and is dropped
//! as soon as a newer request of its kind, or a model it depends on, arrives.
//! Every turn runs under one `catch_unwind` (`runner.rs`): a panic becomes an
//! error answer and the worker lives on. A save runs here too (with progress
//! and cancel), so the UI thread never writes a model; analyses asked for
//! meanwhile wait for it.
//!
//! # Adding a job
//!
//! A job touches two files:
//!
//! 1. `jobs/<name>.rs`: a unit struct and `impl Job for It`, with its request,
//!    answer, progress and key types, `DEPENDS`, `run` and `apply` (and, as it
//!    needs them, `wanted`, `asked`, `progress`, `forget`).
//! 2. `jobs/mod.rs`: `pub mod <name>;`, and, when the state asks for it
//!    (`Job::wanted`), its entry in [`jobs::EACH_FRAME`]. A job started by a
//!    button needs no entry: the button (in its panel, the feature's own UI)
//!    pushes `Command::Ask(Ask::new::<It>(key, request))`.
//!
//! Its slot, its resets, its panics and its staleness come with the trait. The
//! test module (`tests.rs`) writes toy jobs this way and runs them here.

pub mod jobs;
mod published;
mod runner;
mod slot;
#[cfg(test)]
mod tests;

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::SyncSender;

use quantscope_engine::quantized::QuantizedModel;
use quantscope_engine::quantized::view::Published;
use quantscope_engine::run::Activations;
use quantscope_engine::{Checkpoint, Scheme};

use super::state::AppState;

pub use jobs::activation::ActivationView;
pub use jobs::analyze::Analysis;
pub use jobs::capture::{CaptureSummary, MAX_SAMPLES};
pub use jobs::compare::CompareSummary;
pub use jobs::open::{ModelSummary, Source};
pub use published::{PUBLISHED_COLUMN, StoredLayerInfo, StoredSummary};
pub use runner::Worker;
pub use slot::{AppCx, Slot, Slots};

/// One background job: what it asks, what it answers, what the answer depends
/// on, how it runs on the worker and how the answer lands in the app state.
/// Implemented by a unit struct; the methods are its whole life.
pub trait Job: Sized + 'static {
    /// What is sent to the worker. A stream keeps its place in it between turns.
    type Request: Send + 'static;
    /// What comes back when it is done (an `Err` says why it failed).
    type Answer: Send + 'static;
    /// What comes back while it runs (`()` when it reports nothing).
    type Progress: Send + 'static;
    /// What the slot keeps of a request: an equal key is not asked again.
    type Key: Clone + PartialEq + 'static;
    /// What the answer is computed from: invalidating any of it clears the slot.
    const DEPENDS: Deps;
    /// How its requests are scheduled on the worker.
    const RUNS: Runs = Runs::Once;
    /// Completes "internal error while …" when it panics.
    const DOING: &'static str;

    /// Runs on the worker: the whole job, or one step of a stream.
    fn run(request: &mut Self::Request, worker: &mut WorkerState, cx: &Cx<'_, Self>) -> Turn<Self::Answer>;

    /// What the state calls for now, asked unless the slot asks the same key;
    /// `None` for a job that only a command asks for.
    fn wanted(_state: &AppState, _dragging: bool) -> Option<(Self::Key, Self::Request)> {
        None
    }

    /// What the app shows as soon as it is asked (a progress bar at zero, a
    /// name being opened), and what the request makes obsolete.
    fn asked(_request: &Self::Request, _cx: &mut AppCx<'_>) {}

    /// Lands a progress report of the current request.
    fn progress(_progress: Self::Progress, _state: &mut AppState) {}

    /// Lands the answer of the current request (`key`: what it asked).
    fn apply(answer: Result<Self::Answer, String>, key: &Self::Key, cx: &mut AppCx<'_>);

    /// Forgets what it put in the state, because `why` changed (this job's
    /// `DEPENDS` meets `why`).
    fn forget(_state: &mut AppState, _why: Deps) {}
}

/// What a job's answer is computed from, as a set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deps(u8);

impl Deps {
    pub const NONE: Self = Self(0);
    /// The open model. A new one takes the activations and the comparison with it.
    pub const MODEL: Self = Self(1);
    /// The open model's captured (or loaded) activations.
    pub const ACTIVATIONS: Self = Self(2);
    /// The quantized checkpoint compared with the open model.
    pub const COMPARED: Self = Self(4);
    const ALL: Self = Self(7);

    /// Both sets.
    #[must_use]
    pub const fn and(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether the sets share a dependency.
    pub const fn meets(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// These and what goes with them: everything hangs on the model.
    #[must_use]
    pub const fn with_consequences(self) -> Self {
        if self.meets(Self::MODEL) { Self::ALL } else { self }
    }
}

/// How a job's requests are scheduled on the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// Each request runs to the end, in the order it was sent.
    Once,
    /// Of the requests waiting, only the newest runs (after the `Once` ones).
    Newest,
    /// One step per turn while no `Newest` request waits; a newer request
    /// replaces the running one. Lower `rank`s step first.
    Stream { rank: u8 },
}

impl Runs {
    fn rank(self) -> u8 {
        match self {
            Self::Stream { rank } => rank,
            Self::Once | Self::Newest => 0,
        }
    }
}

/// What one turn of a job gives.
pub enum Turn<A> {
    /// The answer: the job is over.
    Done(Result<A, String>),
    /// Not done: a stream steps again in a later turn.
    More,
}

/// What a running job can do besides its work: report progress, see whether it
/// was cancelled.
pub struct Cx<'a, J: Job> {
    generation: u64,
    cancel: &'a AtomicBool,
    out: &'a SyncSender<Answer>,
    job: PhantomData<fn() -> J>,
}

impl<J: Job> Cx<'_, J> {
    /// Sends a progress report; dropped when the UI is behind (the next one follows).
    pub fn progress(&self, progress: J::Progress) {
        let _ = self.out.try_send(Answer::of::<J>(self.generation, Reply::Progress(progress)));
    }

    /// Set when the UI cancels this request (or invalidates what it depends on).
    pub fn cancel(&self) -> &AtomicBool {
        self.cancel
    }
}

/// What the worker sends back about one request.
enum Reply<J: Job> {
    Progress(J::Progress),
    Done(Result<J::Answer, String>),
}

/// One message from the worker, landed by [`Answer::land`].
pub struct Answer(Box<dyn Landing>);

trait Landing: Send {
    fn land(self: Box<Self>, slots: &mut Slots, state: &mut AppState);
}

struct Message<J: Job> {
    generation: u64,
    reply: Reply<J>,
}

impl<J: Job> Landing for Message<J> {
    fn land(self: Box<Self>, slots: &mut Slots, state: &mut AppState) {
        let Some(slot) = slots.get_mut::<J>().filter(|s| s.generation == self.generation) else {
            return; // a stale answer: a newer request, or an invalidated one
        };
        match self.reply {
            Reply::Progress(p) => J::progress(p, state),
            Reply::Done(answer) => {
                slot.answered = true;
                let key = slot.key.clone();
                J::apply(answer, &key, &mut AppCx::new(state, slots));
            }
        }
    }
}

impl Answer {
    fn of<J: Job>(generation: u64, reply: Reply<J>) -> Self {
        Self(Box::new(Message::<J> { generation, reply }))
    }

    /// Applies it to `state` if its request is still the current one.
    pub fn land(self, slots: &mut Slots, state: &mut AppState) {
        self.0.land(slots, state);
    }
}

/// What the worker holds between jobs: the open model and what is derived from
/// it. Jobs read and replace these; the runner owns the requests.
#[derive(Default)]
pub struct WorkerState {
    ckpt: Option<Arc<Checkpoint>>,
    /// The most recently decoded tensor: re-analysis under a new scheme reuses it.
    decoded: Option<(String, Arc<Vec<f32>>)>,
    /// Decode buffer reused by sweeps (fresh buffers cost page faults).
    scratch: Vec<f32>,
    /// The open model's captured activations.
    activations: Option<Arc<Activations>>,
    /// GPTQ and AWQ views computed on the current capture, by layer and scheme (newest last).
    method_views: Vec<(String, Scheme, Arc<jobs::analyze::MethodViewOf>)>,
    /// The open model's own quantized layers (someone else quantized it).
    stored: Option<Arc<QuantizedModel>>,
    /// A quantized checkpoint paired with the open original.
    published: Option<Arc<QuantizedModel>>,
    /// The newest published layer against its original.
    published_cache: Option<(String, Arc<Published>)>,
    /// The model and float outputs the end-to-end runs of these activations share.
    run_cache: Option<jobs::end_to_end::RunCache>,
    /// What the last turn replaced: the runner drops the requests that depend on it.
    invalidated: Deps,
}

impl WorkerState {
    /// Makes `ckpt` the open model, dropping everything computed for the old one.
    fn replace_model(&mut self, ckpt: Checkpoint) {
        let scratch = std::mem::take(&mut self.scratch);
        *self = Self { ckpt: Some(Arc::new(ckpt)), scratch, invalidated: Deps::MODEL, ..Self::default() };
    }
}
