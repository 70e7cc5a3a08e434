//! Self-attention over a [`Pack`]: each sample's queries attend to that sample's
//! keys only (all of them for encoders; causally, within an optional sliding
//! window, for decoders). A loop over samples and heads, because candle has no
//! variable-length attention on the CPU, and per-sample candle ops cost far more
//! in overhead than their arithmetic (a sample's scores are ~14×14 per head).

use std::ops::Range;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use super::pack::Pack;

/// The attention's heads and mask.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub heads: usize,
    /// Key/value heads; each serves `heads / kv_heads` query heads (grouped-query attention).
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Token i sees tokens j ≤ i only, and only those with i − j < `window`.
    pub causal: bool,
    pub window: usize,
}

/// softmax(q kᵀ / √d) v per sample and head. `q` is `[tokens, heads·d]`, `k` and
/// `v` are `[tokens, kv_heads·d]` (heads side by side, as the projections give
/// them); the result is `[tokens, heads·d]`.
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    pack: &Pack,
    h: Shape,
) -> candle_core::Result<Tensor> {
    let t = pack.tokens();
    let (wq, wk) = (h.heads * h.head_dim, h.kv_heads * h.head_dim);
    if h.kv_heads == 0 || !h.heads.is_multiple_of(h.kv_heads) {
        candle_core::bail!("{} query heads cannot share {} key/value heads", h.heads, h.kv_heads);
    }
    if q.dims2()? != (t, wq) || k.dims2()? != (t, wk) || v.dims2()? != (t, wk) {
        candle_core::bail!(
            "attention inputs {:?} {:?} {:?} do not fit {t} tokens",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let q: Vec<f32> = q.flatten_all()?.to_vec1()?;
    let k: Vec<f32> = k.flatten_all()?.to_vec1()?;
    let v: Vec<f32> = v.flatten_all()?.to_vec1()?;
    let mut out = vec![0f32; t * wq];
    // Each sample writes its own rows: split the output into disjoint blocks.
    let mut blocks = Vec::with_capacity(pack.lens().len());
    let mut rest = out.as_mut_slice();
    for rows in pack.ranges() {
        let (mine, tail) = rest.split_at_mut(rows.len() * wq);
        blocks.push((rows, mine));
        rest = tail;
    }
    blocks.into_par_iter().for_each(|(rows, o)| sample(Qkv { q: &q, k: &k, v: &v }, rows, o, h));
    Tensor::from_vec(out, (t, wq), &Device::Cpu)
}

#[derive(Clone, Copy)]
struct Qkv<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
}

/// One sample's attention, every head, into its rows `out` (zeroed).
fn sample(x: Qkv<'_>, rows: Range<usize>, out: &mut [f32], h: Shape) {
    let d = h.head_dim;
    let (wq, wk) = (h.heads * d, h.kv_heads * d);
    let rep = h.heads / h.kv_heads;
    let scale = (1.0 / (d as f64).sqrt()) as f32;
    let n = rows.len();
    let mut p = vec![0f32; n];
    for head in 0..h.heads {
        let g = head / rep;
        let key = |j: usize| &x.k[(rows.start + j) * wk + g * d..][..d];
        let value = |j: usize| &x.v[(rows.start + j) * wk + g * d..][..d];
        for i in 0..n {
            let qi = &x.q[(rows.start + i) * wq + head * d..][..d];
            let seen = if h.causal { (i + 1).saturating_sub(h.window)..i + 1 } else { 0..n };
            let mut max = f32::NEG_INFINITY;
            for j in seen.clone() {
                p[j] = dot(qi, key(j)) * scale;
                max = max.max(p[j]);
            }
            let mut sum = 0f32;
            for j in seen.clone() {
                p[j] = (p[j] - max).exp();
                sum += p[j];
            }
            let o = &mut out[i * wq + head * d..][..d];
            for j in seen {
                let w = p[j] / sum;
                for (o, v) in o.iter_mut().zip(value(j)) {
                    *o += w * v;
                }
            }
        }
    }
}

/// Dot product with eight independent partial sums (the compiler vectorises it).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain softmax attention of one sample and one head, in f64.
    fn naive(q: &[Vec<f64>], k: &[Vec<f64>], v: &[Vec<f64>], causal: bool) -> Vec<Vec<f64>> {
        let d = q[0].len() as f64;
        q.iter()
            .enumerate()
            .map(|(i, qi)| {
                let seen = if causal { i + 1 } else { k.len() };
                let s: Vec<f64> = (0..seen)
                    .map(|j| qi.iter().zip(&k[j]).map(|(a, b)| a * b).sum::<f64>() / d.sqrt())
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                (0..v[0].len()).map(|c| (0..seen).map(|j| e[j] / z * v[j][c]).sum()).collect()
            })
            .collect()
    }

    #[test]
    fn packed_samples_attend_only_to_themselves() {
        // Two samples (3 and 2 tokens), 2 query heads sharing 1 key/value head, d = 10.
        let (d, t) = (10, 5);
        let val = |i: usize, s: usize| ((i * 31 + s * 17) % 23) as f32 / 7.0 - 1.5;
        let q: Vec<f32> = (0..t * 2 * d).map(|i| val(i, 1)).collect();
        let k: Vec<f32> = (0..t * d).map(|i| val(i, 2)).collect();
        let v: Vec<f32> = (0..t * d).map(|i| val(i, 3)).collect();
        let pack = Pack::of(&[vec![0; 3], vec![0; 2]]);
        let tensor = |x: &[f32], w: usize| Tensor::from_slice(x, (t, w), &Device::Cpu).expect("tensor");
        for causal in [false, true] {
            let h = Shape { heads: 2, kv_heads: 1, head_dim: d, causal, window: usize::MAX };
            let got: Vec<Vec<f32>> = attend(&tensor(&q, 2 * d), &tensor(&k, d), &tensor(&v, d), &pack, h)
                .expect("attend")
                .to_vec2()
                .expect("rows");
            for rows in pack.ranges() {
                let kk: Vec<Vec<f64>> =
                    rows.clone().map(|r| k[r * d..][..d].iter().map(|&x| x.into()).collect()).collect();
                let vv: Vec<Vec<f64>> =
                    rows.clone().map(|r| v[r * d..][..d].iter().map(|&x| x.into()).collect()).collect();
                for head in 0..2 {
                    let qq: Vec<Vec<f64>> = rows
                        .clone()
                        .map(|r| q[r * 2 * d + head * d..][..d].iter().map(|&x| x.into()).collect())
                        .collect();
                    let want = naive(&qq, &kk, &vv, causal);
                    for (i, r) in rows.clone().enumerate() {
                        for c in 0..d {
                            let g = f64::from(got[r][head * d + c]);
                            assert!((g - want[i][c]).abs() < 1e-5, "causal {causal} row {r} head {head}");
                        }
                    }
                }
            }
        }
    }
}
