//! Element-wise candle ops applied a few rows at a time. candle runs an
//! element-wise op of ≥ 64 Ki elements on its own thread pool, whose threads spin
//! while they wait; with packs already running in parallel on rayon that doubled
//! the CPU time of a sensitivity run (BENCHMARKS.md, "Running the model"). Below
//! that size the op runs on the calling thread, so the forwards call element-wise
//! ops through these helpers on `[tokens, width]` activations.

use candle_core::{Result, Tensor};

/// Elements per chunk: under candle's threshold for its pool (64 Ki).
const CHUNK: usize = 32 * 1024;

/// Rows per chunk of a `[rows, width]` tensor.
fn step(width: usize) -> usize {
    (CHUNK / width.max(1)).max(1)
}

/// `f` applied to `x` (`[rows, width]`) in row chunks.
pub(crate) fn map(x: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let (t, n) = x.dims2()?;
    let s = step(n);
    if t <= s {
        return f(x);
    }
    let parts = (0..t).step_by(s).map(|r| f(&x.narrow(0, r, s.min(t - r))?)).collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 0)
}

/// `f(a, b)` in row chunks, `b` either `a`'s shape (chunked alike) or broadcast
/// over the rows (a bias, `[width]`).
pub(crate) fn zip(a: &Tensor, b: &Tensor, f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let (t, n) = a.dims2()?;
    let s = step(n);
    if t <= s {
        return f(a, b);
    }
    let same = b.dims() == a.dims();
    let parts = (0..t)
        .step_by(s)
        .map(|r| {
            let rows = s.min(t - r);
            if same {
                f(&a.narrow(0, r, rows)?, &b.narrow(0, r, rows)?)
            } else {
                f(&a.narrow(0, r, rows)?, b)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 0)
}

/// a + b of two `[rows, width]` tensors.
pub(crate) fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    zip(a, b, Tensor::add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn chunked_ops_equal_the_whole_op() {
        let (t, n) = (70, 1000); // 70 000 elements: three chunks of 32 rows and one of 6
        let a =
            Tensor::arange(0f32, (t * n) as f32, &Device::Cpu).and_then(|x| x.reshape((t, n))).expect("a");
        let b = (a.sin().expect("sin") * 3.0).expect("b");
        let bias = Tensor::arange(0f32, n as f32, &Device::Cpu).expect("bias");
        let same = |x: Tensor, y: Tensor| {
            let (x, y): (Vec<f32>, Vec<f32>) = (
                x.flatten_all().and_then(|v| v.to_vec1()).expect("x"),
                y.flatten_all().and_then(|v| v.to_vec1()).expect("y"),
            );
            assert_eq!(x, y);
        };
        same(add(&a, &b).expect("add"), a.add(&b).expect("whole"));
        same(zip(&a, &bias, Tensor::broadcast_add).expect("bias"), a.broadcast_add(&bias).expect("whole"));
        same(map(&b, Tensor::gelu_erf).expect("gelu"), b.gelu_erf().expect("whole"));
    }
}
