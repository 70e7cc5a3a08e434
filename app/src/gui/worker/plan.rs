//! The worker's job for the Plan view's `output` objective: every planned layer
//! × candidate scheme's output SQNR over the captured activations
//! (`planner::output`), one layer per turn so that analyses interleave, like
//! the sensitivity matrix.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use quantscope_engine::Scheme;
use quantscope_engine::planner::output::{OutputSqnr, output_row};

use super::{Response, WorkerState, panic_message};

/// Output SQNR of `layers` × `schemes` under the current capture.
pub struct OutputRequest {
    pub generation: u64,
    pub layers: Vec<String>,
    pub schemes: Vec<Scheme>,
}

pub(super) struct OutputJob {
    request: OutputRequest,
    rows: Vec<Vec<Option<f64>>>,
}

impl WorkerState {
    pub(super) fn start_output(&mut self, request: OutputRequest, responses: &SyncSender<Response>) {
        if self.activations.is_none() {
            let result = Err("run the model first (a layer's input activations tab)".to_string());
            let _ = responses.send(Response::OutputDone { generation: request.generation, result });
            return;
        }
        // A newer request replaces a running one.
        self.output = Some(OutputJob { request, rows: Vec::new() });
    }

    /// One layer of the output matrix; the whole matrix once all are done.
    pub(super) fn output_step(&mut self, responses: &SyncSender<Response>) {
        let (Some(job), Some(ckpt), Some(acts)) = (self.output.as_mut(), &self.ckpt, &self.activations)
        else {
            self.output = None;
            return;
        };
        let r = &job.request;
        let (generation, total) = (r.generation, r.layers.len());
        if let Some(name) = r.layers.get(job.rows.len()) {
            let scratch = &mut self.scratch;
            let row = catch_unwind(AssertUnwindSafe(|| {
                let info = ckpt.tensor(name).map_err(|e| e.to_string())?;
                let row = match acts.site(name) {
                    Some(site) => {
                        output_row(ckpt, info, site, &r.schemes, scratch).map_err(|e| e.to_string())
                    }
                    None => Ok(vec![None; r.schemes.len()]),
                };
                ckpt.release(info);
                row
            }))
            .unwrap_or_else(|p| {
                Err(format!("internal error while measuring {name}: {}", panic_message(&*p)))
            });
            match row {
                Ok(row) => job.rows.push(row),
                Err(e) => {
                    self.output = None;
                    let _ = responses.send(Response::OutputDone { generation, result: Err(e) });
                    return;
                }
            }
            let _ = responses.try_send(Response::OutputProgress { generation, done: job.rows.len(), total });
        }
        if job.rows.len() == total
            && let Some(job) = self.output.take()
        {
            let OutputRequest { layers, schemes, .. } = job.request;
            let schemes = schemes.iter().map(ToString::to_string).collect();
            let out = OutputSqnr { layers, schemes, db: job.rows };
            let _ = responses.send(Response::OutputDone { generation, result: Ok(Arc::new(out)) });
        }
    }
}
