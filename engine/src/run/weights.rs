//! Checkpoint tensors as candle tensors (f32, whatever the stored dtype), and the
//! Linear layer every forward uses, with its [`Hook`] calls.

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::Module;

use super::Hook;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};

/// Reads the tensors of one model, under an optional name prefix (`bert.`, `model.`).
pub(crate) struct Loader<'a> {
    pub ckpt: &'a Checkpoint,
    pub prefix: String,
    pub config: &'a Path,
}

impl Loader<'_> {
    /// The full name of `name`, or an error naming the config and the tensor.
    pub fn name(&self, name: &str) -> Result<String> {
        let full = format!("{}{name}", self.prefix);
        self.ckpt.tensor(&full).map(|_| full.clone()).map_err(|_| Error::Tensor {
            path: self.config.to_path_buf(),
            tensor: full,
            reason: "missing: the checkpoint does not match its config.json".into(),
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.ckpt.tensor(&format!("{}{name}", self.prefix)).is_ok()
    }

    /// `name` as an f32 tensor with its stored shape.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let full = self.name(name)?;
        let info = self.ckpt.tensor(&full)?;
        let shape = info.shape.clone();
        let values = self.ckpt.load_f32(&full)?;
        Tensor::from_vec(values, shape, &Device::Cpu).map_err(|e| Error::Tensor {
            path: self.config.to_path_buf(),
            tensor: full,
            reason: e.to_string(),
        })
    }

    /// `name` with an expected shape.
    pub fn shaped(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.tensor(name)?;
        if t.dims() != shape {
            return Err(Error::Tensor {
                path: self.config.to_path_buf(),
                tensor: format!("{}{name}", self.prefix),
                reason: format!("shape {:?}, config.json implies {shape:?}", t.dims()),
            });
        }
        Ok(t)
    }

    /// A Linear layer `{name}.weight` `[out, in]`, with `{name}.bias` when stored.
    pub fn linear(&self, name: &str, out: usize, inp: usize) -> Result<Linear> {
        let w = self.shaped(&format!("{name}.weight"), &[out, inp])?;
        let bias = format!("{name}.bias");
        let b = if self.has(&bias) { Some((self.name(&bias)?, self.shaped(&bias, &[out])?)) } else { None };
        Ok(Linear { name: self.name(&format!("{name}.weight"))?, w, b })
    }
}

/// A Linear layer; `name` is its weight tensor's full name.
pub(crate) struct Linear {
    pub name: String,
    pub w: Tensor,
    /// The bias with its tensor name (a hook may replace it by that name).
    pub b: Option<(String, Tensor)>,
}

impl Linear {
    /// `x · Wᵀ + b` with the hook's weight when it gives one. The input was
    /// already shown to the hook by the caller (once for layers sharing it).
    pub fn forward(&self, x: &Tensor, hook: &dyn Hook) -> candle_core::Result<Tensor> {
        let w = hook.weight(&self.name).unwrap_or(&self.w);
        let y = candle_nn::Linear::new(w.clone(), None).forward(x)?;
        match &self.b {
            Some((name, b)) => super::rows::zip(&y, hook.weight(name).unwrap_or(b), Tensor::broadcast_add),
            None => Ok(y),
        }
    }

    pub fn out_features(&self) -> usize {
        self.w.dims().first().copied().unwrap_or(0)
    }

    pub fn in_features(&self) -> usize {
        self.w.dims().get(1).copied().unwrap_or(0)
    }
}

/// Shows `x` to the hook as the input of `layers`.
pub(crate) fn show(hook: &mut dyn Hook, layers: &[&Linear], x: &Tensor) -> candle_core::Result<()> {
    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
    hook.input(&names, x)
}
