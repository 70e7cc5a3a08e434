//! The UI side of the worker: what has been asked, and what answers still
//! count. Every request carries a generation; each job's [`Slot`] says which
//! generation is current and what it asked, so a stale answer is dropped and an
//! unchanged question is not asked twice. The jobs themselves (what they ask,
//! and how their answers land) are in [`super::worker::jobs`].

use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::state::AppState;
use super::worker::{AppCx, Deps, Job, Slot, Slots, Worker, jobs};

/// The worker and the records of what was asked of it.
pub struct Requests {
    worker: Worker,
    generation: u64,
    slots: Slots,
}

impl Requests {
    pub fn new(worker: Worker) -> Self {
        Self { worker, generation: 0, slots: Slots::default() }
    }

    /// Sends a request of job `J` (`key`: what its slot remembers of it). The
    /// previous request of `J`, if unanswered, becomes stale.
    pub fn ask<J: Job>(&mut self, state: &mut AppState, key: J::Key, request: J::Request) {
        self.generation += 1;
        let generation = self.generation;
        J::asked(&request, &mut AppCx::new(state, &mut self.slots));
        let cancel = Arc::new(AtomicBool::new(false));
        self.slots.put::<J>(Slot::new(generation, key, Arc::clone(&cancel)));
        self.worker.send::<J>(generation, request, cancel);
    }

    /// Asks job `J` for what the state calls for, unless that is already asked.
    pub fn want<J: Job>(&mut self, state: &mut AppState, dragging: bool) {
        if let Some((key, request)) = J::wanted(state, dragging)
            && !self.slots.asks::<J>(&key)
        {
            self.ask::<J>(state, key, request);
        }
    }

    /// Cancels the newest request of job `J` (a save, a model run).
    pub fn cancel<J: Job>(&self) {
        self.slots.cancel::<J>();
    }

    /// Clears every slot that depends on `deps`, and what those jobs show.
    pub fn invalidate(&mut self, state: &mut AppState, deps: Deps) {
        self.slots.invalidate(deps, state);
    }

    /// Job `J`'s newest request, if any.
    pub fn slot<J: Job>(&self) -> Option<&Slot<J>> {
        self.slots.get::<J>()
    }

    /// Applies every answer that has arrived to `state`.
    pub fn poll(&mut self, state: &mut AppState) {
        while let Some(answer) = self.worker.try_recv() {
            answer.land(&mut self.slots, state);
        }
    }

    /// Asks for every job the state calls for (the analysis of the selection,
    /// the SQNR column, the matrix of the sensitivity view, …), unless the same
    /// question is already out. While a range is dragged the columns wait.
    pub fn request_work(&mut self, state: &mut AppState, dragging: bool) {
        if state.model.is_none() {
            return;
        }
        for want in jobs::EACH_FRAME {
            want(self, state, dragging);
        }
    }
}

/// Sends one request (what an [`Ask`] holds).
type SendFn = Rc<dyn Fn(&mut Requests, &mut AppState)>;

/// A request a panel hands to the app (`Command::Ask`), for a job no named
/// command starts.
#[derive(Clone)]
pub struct Ask {
    job: &'static str,
    send: SendFn,
}

impl Ask {
    pub fn new<J: Job>(key: J::Key, request: J::Request) -> Self
    where
        J::Request: Clone,
    {
        let send = move |r: &mut Requests, s: &mut AppState| r.ask::<J>(s, key.clone(), request.clone());
        Self { job: std::any::type_name::<J>(), send: Rc::new(send) }
    }

    /// Sends the request.
    pub fn send(&self, requests: &mut Requests, state: &mut AppState) {
        (self.send)(requests, state);
    }
}

impl std::fmt::Debug for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ask({})", self.job)
    }
}
