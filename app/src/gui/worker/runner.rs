//! The worker thread: its queue, the schedule of the jobs' turns, and the one
//! guarded turn that turns a panic into an error answer.

use std::any::TypeId;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

use super::{Answer, Cx, Deps, Job, Reply, Runs, Turn, WorkerState};

/// One request on the worker, whatever its job.
trait Task: Send {
    fn kind(&self) -> TypeId;
    fn runs(&self) -> Runs;
    fn depends(&self) -> Deps;
    /// One turn of the job; true once its answer has been sent.
    fn turn(&mut self, worker: &mut WorkerState, out: &SyncSender<Answer>) -> bool;
}

struct Asked<J: Job> {
    generation: u64,
    request: J::Request,
    cancel: Arc<AtomicBool>,
}

impl<J: Job> Task for Asked<J> {
    fn kind(&self) -> TypeId {
        TypeId::of::<J>()
    }

    fn runs(&self) -> Runs {
        J::RUNS
    }

    fn depends(&self) -> Deps {
        J::DEPENDS
    }

    /// The one guarded runner: a panic inside a job becomes its error answer.
    fn turn(&mut self, worker: &mut WorkerState, out: &SyncSender<Answer>) -> bool {
        let cx = Cx::<J> { generation: self.generation, cancel: &self.cancel, out, job: PhantomData };
        let request = &mut self.request;
        let turn = catch_unwind(AssertUnwindSafe(|| J::run(request, worker, &cx))).unwrap_or_else(|p| {
            Turn::Done(Err(format!("internal error while {}: {}", J::DOING, panic_message(&*p))))
        });
        match turn {
            Turn::Done(answer) => {
                let _ = out.send(Answer::of::<J>(self.generation, Reply::Done(answer)));
                true
            }
            Turn::More => false,
        }
    }
}

/// The UI's handle on the worker thread.
pub struct Worker {
    tx: SyncSender<Box<dyn Task>>,
    rx: Receiver<Answer>,
}

impl Worker {
    /// Starts the thread. `repaint` is called after every turn (the app passes
    /// `ctx.request_repaint`).
    pub fn spawn(repaint: impl Fn() + Send + 'static) -> Self {
        let (tx, requests) = sync_channel::<Box<dyn Task>>(256);
        let (answers, rx) = sync_channel::<Answer>(4096);
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
                let run = move || WorkerState::default().serve(&requests, &answers, &repaint);
                match pool {
                    Some(pool) => pool.install(run),
                    None => run(),
                }
            })
            .map_or_else(|e| panic!("cannot start the engine thread: {e}"), |_| ());
        Self { tx, rx }
    }

    /// Sends a request of job `J`; `cancel` is the flag its slot keeps.
    pub fn send<J: Job>(&self, generation: u64, request: J::Request, cancel: Arc<AtomicBool>) {
        // A closed channel means the worker is gone; the UI shows no new results.
        let _ = self.tx.send(Box::new(Asked::<J> { generation, request, cancel }));
    }

    pub fn try_recv(&self) -> Option<Answer> {
        self.rx.try_recv().ok()
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(ToString::to_string)
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl WorkerState {
    /// The runner: drains the queue, runs what it asks, steps the streams.
    fn serve(mut self, requests: &Receiver<Box<dyn Task>>, out: &SyncSender<Answer>, repaint: &dyn Fn()) {
        let mut streams: Vec<Box<dyn Task>> = Vec::new();
        loop {
            // Block only when no stream is left to step.
            let Some(pending) = drain(requests, streams.is_empty()) else { return };
            let mut newest: Vec<Box<dyn Task>> = Vec::new();
            for mut task in pending {
                match task.runs() {
                    Runs::Once => {
                        if !task.turn(&mut self, out) {
                            streams.push(task);
                        }
                        self.drop_invalidated(&mut [&mut streams, &mut newest]);
                    }
                    Runs::Newest => {
                        newest.retain(|t| t.kind() != task.kind());
                        newest.push(task);
                    }
                    Runs::Stream { .. } => {
                        streams.retain(|t| t.kind() != task.kind());
                        streams.push(task);
                    }
                }
            }
            if newest.is_empty() {
                let next = (0..streams.len()).min_by_key(|&i| streams[i].runs().rank());
                if let Some(i) = next
                    && streams[i].turn(&mut self, out)
                {
                    streams.remove(i);
                }
            }
            for mut task in newest {
                if !task.turn(&mut self, out) {
                    streams.push(task);
                }
            }
            self.drop_invalidated(&mut [&mut streams]);
            repaint();
        }
    }

    /// Drops the waiting and running requests that depend on what a turn replaced.
    fn drop_invalidated(&mut self, lists: &mut [&mut Vec<Box<dyn Task>>]) {
        let gone = std::mem::take(&mut self.invalidated).with_consequences();
        if gone != Deps::NONE {
            for list in lists {
                list.retain(|t| !t.depends().meets(gone));
            }
        }
    }
}

/// Every request waiting, after waiting for one when `block`; `None` once the
/// UI is gone.
fn drain(requests: &Receiver<Box<dyn Task>>, block: bool) -> Option<Vec<Box<dyn Task>>> {
    let mut pending = Vec::new();
    if block {
        pending.push(requests.recv().ok()?);
    }
    loop {
        match requests.try_recv() {
            Ok(r) => pending.push(r),
            Err(TryRecvError::Empty) => return Some(pending),
            Err(TryRecvError::Disconnected) => return None,
        }
    }
}
