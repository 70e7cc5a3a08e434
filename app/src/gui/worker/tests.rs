//! A toy job written here, as a new job would be written in `jobs/`, run
//! through the real worker and runner: its answer lands, a panic in it becomes
//! an error answer and the worker lives on, invalidating its dependency clears
//! its slot and what it showed, and a stream steps, reports progress and is
//! replaced by a newer request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{AppCx, Cx, Deps, Job, Runs, Turn, Worker, WorkerState};
use crate::gui::requests::{Ask, Requests};
use crate::gui::state::AppState;

/// Doubles a number on the worker; 0 panics. Shows its answer in the status line.
struct Double;

impl Job for Double {
    type Request = u32;
    type Answer = u32;
    type Progress = ();
    type Key = u32;
    const DEPENDS: Deps = Deps::ACTIVATIONS;
    const DOING: &'static str = "doubling";

    fn run(n: &mut u32, _: &mut WorkerState, _: &Cx<'_, Self>) -> Turn<u32> {
        assert!(*n != 0, "zero is not welcome");
        Turn::Done(Ok(*n * 2))
    }

    /// The number in the selection, when it is one.
    fn wanted(state: &AppState, _: bool) -> Option<(u32, u32)> {
        let n = state.selected.as_deref()?.parse().ok()?;
        Some((n, n))
    }

    fn apply(answer: Result<u32, String>, _: &u32, cx: &mut AppCx<'_>) {
        match answer {
            Ok(n) => cx.state.status = Some(format!("doubled: {n}")),
            Err(e) => cx.state.error = Some(e),
        }
    }

    fn forget(state: &mut AppState, _: Deps) {
        state.status = None;
    }
}

/// Turns of [`Count`] run so far, over every test.
static COUNTED: AtomicUsize = AtomicUsize::new(0);

/// Counts to a number, one per turn, reporting each step; answers the count.
struct Count;

impl Job for Count {
    /// (the number to count to, counted so far).
    type Request = (usize, usize);
    type Answer = usize;
    type Progress = usize;
    type Key = usize;
    const DEPENDS: Deps = Deps::MODEL;
    const RUNS: Runs = Runs::Stream { rank: 0 };
    const DOING: &'static str = "counting";

    fn run((to, done): &mut (usize, usize), _: &mut WorkerState, cx: &Cx<'_, Self>) -> Turn<usize> {
        if *done == *to {
            return Turn::Done(Ok(*done));
        }
        *done += 1;
        COUNTED.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(2));
        cx.progress(*done);
        Turn::More
    }

    fn progress(done: usize, state: &mut AppState) {
        state.teach_slice = done;
    }

    fn apply(answer: Result<usize, String>, _: &usize, cx: &mut AppCx<'_>) {
        cx.state.status = answer.ok().map(|n| format!("counted: {n}"));
    }
}

fn requests() -> (Requests, AppState) {
    (Requests::new(Worker::spawn(|| {})), AppState::default())
}

/// Polls answers until `done` holds (or fails after ten seconds).
fn poll_until(r: &mut Requests, state: &mut AppState, what: &str, done: impl Fn(&AppState) -> bool) {
    let start = Instant::now();
    while !done(state) {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
        r.poll(state);
    }
}

#[test]
fn a_toy_job_answers_survives_its_panic_and_goes_with_its_dependency() {
    let (mut r, mut state) = requests();
    // Asked as a panel would ask it (`Command::Ask`).
    Ask::new::<Double>(21, 21).send(&mut r, &mut state);
    poll_until(&mut r, &mut state, "the answer", |s| s.status.as_deref() == Some("doubled: 42"));
    assert!(r.slot::<Double>().is_some_and(|s| s.answered && s.key == 21));

    r.ask::<Double>(&mut state, 0, 0);
    poll_until(&mut r, &mut state, "the panic's answer", |s| s.error.is_some());
    let e = state.error.take().unwrap_or_default();
    assert!(e.contains("internal error while doubling: zero is not welcome"), "{e}");

    // The worker lives on; asked as the frame asks (`EACH_FRAME`), once per key.
    state.selected = Some("5".into());
    r.want::<Double>(&mut state, false);
    let generation = r.slot::<Double>().map(|s| s.generation);
    r.want::<Double>(&mut state, false);
    assert_eq!(r.slot::<Double>().map(|s| s.generation), generation, "an unchanged key is not asked again");
    poll_until(&mut r, &mut state, "the answer after the panic", |s| {
        s.status.as_deref() == Some("doubled: 10")
    });

    // A new model takes the activations with it, and what depends on them.
    r.invalidate(&mut state, Deps::MODEL);
    assert!(r.slot::<Double>().is_none());
    assert_eq!(state.status, None, "the job forgot what it showed");
}

#[test]
fn a_stream_reports_progress_and_a_newer_request_replaces_it() {
    let (mut r, mut state) = requests();
    r.ask::<Count>(&mut state, 1000, (1000, 0));
    poll_until(&mut r, &mut state, "progress", |s| s.teach_slice > 0);
    r.ask::<Count>(&mut state, 3, (3, 0));
    poll_until(&mut r, &mut state, "the newer count", |s| s.status.is_some());
    assert_eq!(state.status.as_deref(), Some("counted: 3"));
    // The first stream stopped when the second arrived, far from its end.
    std::thread::sleep(Duration::from_millis(50));
    assert!(COUNTED.load(Ordering::Relaxed) < 500, "{} turns", COUNTED.load(Ordering::Relaxed));
}
