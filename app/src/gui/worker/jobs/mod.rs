//! Every background job, one per file, and the list of those the state asks for
//! each frame. See the [`worker`](super) module for how to add one.

pub mod activation;
pub mod analyze;
pub mod capture;
pub mod compare;
pub mod end_to_end;
pub mod matrix;
pub mod open;
pub mod output_column;
pub mod panic;
pub mod plan_output;
pub mod save;
pub mod sqnr_column;
pub mod stored;

use crate::gui::requests::Requests;
use crate::gui::state::AppState;

/// Asks a job for what the state calls for ([`Requests::want`]).
pub type Want = fn(&mut Requests, &mut AppState, bool);

/// The jobs the frame asks for whenever the state calls for them, in this order.
pub const EACH_FRAME: &[Want] = &[
    Requests::want::<analyze::Analyze>,
    Requests::want::<activation::Activation>,
    Requests::want::<stored::Stored>,
    Requests::want::<plan_output::PlanOutput>,
    Requests::want::<output_column::OutputColumn>,
    Requests::want::<matrix::Matrix>,
    Requests::want::<sqnr_column::SqnrColumn>,
];
