//! The UI side's record of each job: its newest request (generation, key and
//! cancel flag) and whether the answer came, kept by job type. Invalidating a
//! dependency clears every slot whose job declares it, cancels what it was
//! running, and has the job forget what it put in the state.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Deps, Job};
use crate::gui::state::AppState;

/// One job's newest request, as the UI remembers it.
pub struct Slot<J: Job> {
    pub generation: u64,
    pub key: J::Key,
    /// Whether its answer (or an error) has arrived.
    pub answered: bool,
    cancel: Arc<AtomicBool>,
}

impl<J: Job> Slot<J> {
    pub fn new(generation: u64, key: J::Key, cancel: Arc<AtomicBool>) -> Self {
        Self { generation, key, answered: false, cancel }
    }

    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// A job's slot, whatever the job.
trait Entry: Any {
    fn depends(&self) -> Deps;
    /// Empties the slot (cancelling its request) and has the job forget its answer.
    fn clear(&mut self, state: &mut AppState, why: Deps);
}

/// The slot of job `J`; `None` once cleared (the job has been asked before).
struct Kept<J: Job>(Option<Slot<J>>);

impl<J: Job> Entry for Kept<J> {
    fn depends(&self) -> Deps {
        J::DEPENDS
    }

    fn clear(&mut self, state: &mut AppState, why: Deps) {
        if let Some(slot) = self.0.take() {
            slot.cancel();
        }
        J::forget(state, why);
    }
}

/// Every job's slot, by job type. A job gets its slot when first asked.
#[derive(Default)]
pub struct Slots {
    kept: HashMap<TypeId, Box<dyn Entry>>,
}

impl Slots {
    pub fn get<J: Job>(&self) -> Option<&Slot<J>> {
        let entry: &dyn Any = self.kept.get(&TypeId::of::<J>())?.as_ref();
        entry.downcast_ref::<Kept<J>>()?.0.as_ref()
    }

    pub fn get_mut<J: Job>(&mut self) -> Option<&mut Slot<J>> {
        let entry: &mut dyn Any = self.kept.get_mut(&TypeId::of::<J>())?.as_mut();
        entry.downcast_mut::<Kept<J>>()?.0.as_mut()
    }

    /// Makes `slot` job `J`'s newest request.
    pub fn put<J: Job>(&mut self, slot: Slot<J>) {
        self.kept.insert(TypeId::of::<J>(), Box::new(Kept(Some(slot))));
    }

    /// Whether `J`'s newest request asked `key`.
    pub fn asks<J: Job>(&self, key: &J::Key) -> bool {
        self.get::<J>().is_some_and(|s| s.key == *key)
    }

    /// Cancels `J`'s newest request.
    pub fn cancel<J: Job>(&self) {
        if let Some(s) = self.get::<J>() {
            s.cancel();
        }
    }

    /// Clears every slot whose job depends on `deps` (or on what goes with them).
    pub fn invalidate(&mut self, deps: Deps, state: &mut AppState) {
        let why = deps.with_consequences();
        for entry in self.kept.values_mut() {
            if entry.depends().meets(why) {
                entry.clear(state, why);
            }
        }
    }
}

/// The app side of a job: the state its answer lands in, and the slots it can
/// invalidate (a new model makes every model-dependent answer obsolete).
pub struct AppCx<'a> {
    pub state: &'a mut AppState,
    slots: &'a mut Slots,
}

impl<'a> AppCx<'a> {
    pub fn new(state: &'a mut AppState, slots: &'a mut Slots) -> Self {
        Self { state, slots }
    }

    /// Clears every slot that depends on `deps`, and what those jobs show.
    pub fn invalidate(&mut self, deps: Deps) {
        self.slots.invalidate(deps, self.state);
    }
}
