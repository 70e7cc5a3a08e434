//! A test hook: a job that panics, to show that a panic inside the worker is
//! reported as an error and the worker lives on.

use super::super::{AppCx, Cx, Deps, Job, Turn, WorkerState};

/// Panics on the worker.
pub struct Panic;

impl Job for Panic {
    type Request = ();
    type Answer = ();
    type Progress = ();
    type Key = ();
    const DEPENDS: Deps = Deps::NONE;
    const DOING: &'static str = "testing the worker";

    fn run((): &mut (), _: &mut WorkerState, _: &Cx<'_, Self>) -> Turn<()> {
        panic!("test panic inside the worker")
    }

    fn apply(answer: Result<(), String>, (): &(), cx: &mut AppCx<'_>) {
        if let Err(e) = answer {
            cx.state.error = Some(e);
        }
    }
}
