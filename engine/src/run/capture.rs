//! Activation capture: one pass over the samples, recording for each Linear
//! layer's input a histogram, per-channel absmax, the second moments Σx_j² (and
//! the full Σxxᵀ where in_features ≤ [`GRAM_MAX`]), and a fixed-size uniform
//! sample of whole tokens for the calibration and activation-error views.
//! Memory follows these statistics, never the number of tokens.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::Tensor;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{Hook, Model, PACK_TOKENS, Pack};
use crate::analyze::Histogram;
use crate::error::{Error, Result};

/// The widest input whose full second-moment matrix is kept (f64, in² entries).
pub const GRAM_MAX: usize = 4096;
/// Bins of the growing activation histogram.
pub const BINS: usize = 2048;
/// Values of the kept token sample per input (whole tokens, so about this many).
pub const SAMPLE_VALUES: usize = 1 << 19;
/// Tokens gathered before one Σxxᵀ update (summed in f32 within it, in f64 across).
const GRAM_BATCH: usize = 512;
/// Rows of Σxxᵀ per matmul of the one-triangle update.
const GRAM_BLOCK: usize = 256;

/// A histogram over [−r, r] whose r doubles (merging bin pairs) when a value
/// falls outside, so one pass needs no range in advance.
#[derive(Clone, Debug, PartialEq)]
pub struct GrowingHistogram {
    half_range: f64,
    counts: Vec<u64>,
}

impl GrowingHistogram {
    fn new() -> Self {
        Self { half_range: 0.0, counts: vec![0; BINS] }
    }

    /// A histogram read back from a file: r and the [`BINS`] counts over [−r, r].
    pub(crate) fn from_parts(half_range: f64, counts: Vec<u64>) -> std::result::Result<Self, String> {
        if counts.len() != BINS || !(half_range >= 0.0 && half_range.is_finite()) {
            return Err(format!(
                "{} bins over ±{half_range}, expected {BINS} over a finite range",
                counts.len()
            ));
        }
        Ok(Self { half_range, counts })
    }

    /// r of the range [−r, r] (0 before any value).
    pub fn half_range(&self) -> f64 {
        self.half_range
    }

    /// All [`BINS`] counts over [−r, r].
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    fn add(&mut self, xs: &[f32]) {
        let amax = xs.iter().filter(|x| x.is_finite()).fold(0f32, |m, x| m.max(x.abs())) as f64;
        if self.half_range == 0.0 {
            self.half_range = 2f64.powi(amax.max(1e-30).log2().ceil() as i32);
        }
        while amax >= self.half_range {
            self.grow();
        }
        let n = self.counts.len();
        let inv = n as f64 / (2.0 * self.half_range);
        for &x in xs.iter().filter(|x| x.is_finite()) {
            let i = ((x as f64 + self.half_range) * inv) as usize;
            self.counts[i.min(n - 1)] += 1;
        }
    }

    /// r → 2r: the old range becomes the middle half, two old bins per new one.
    fn grow(&mut self) {
        let n = self.counts.len();
        let mut next = vec![0; n];
        for j in 0..n / 2 {
            next[n / 4 + j] = self.counts[2 * j] + self.counts[2 * j + 1];
        }
        self.counts = next;
        self.half_range *= 2.0;
    }

    /// The counts trimmed to the occupied bins, as the plots take them.
    pub fn histogram(&self) -> Histogram {
        let n = self.counts.len();
        let first = self.counts.iter().position(|&c| c > 0).unwrap_or(0);
        let last = self.counts.iter().rposition(|&c| c > 0).unwrap_or(n - 1);
        let w = 2.0 * self.half_range / n as f64;
        Histogram {
            lo: -self.half_range + first as f64 * w,
            hi: -self.half_range + (last + 1) as f64 * w,
            counts: self.counts[first..=last].to_vec(),
        }
    }
}

/// What one Linear input (shared by the layers in `layers`) looked like.
#[derive(Clone, Debug)]
pub struct SiteStats {
    /// The Linear layers fed by this input (weight names).
    pub layers: Vec<String>,
    pub in_features: usize,
    pub tokens: u64,
    pub min: f32,
    pub max: f32,
    pub absmax: Vec<f32>,
    /// Σ over tokens of x_j².
    pub sum_sq: Vec<f64>,
    /// Σ over tokens of |x_j| (AWQ's activation scale); None in a capture
    /// saved before it was kept.
    pub sum_abs: Option<Vec<f64>>,
    /// Σ over tokens of x xᵀ, `[in, in]` f64, when in_features ≤ [`GRAM_MAX`].
    pub gram: Option<Tensor>,
    pub histogram: GrowingHistogram,
    /// A uniform sample of whole tokens, row-major `[rows, in_features]`.
    pub sample: Vec<f32>,
    seen_rows: u64,
    rng: SmallRng,
    /// Tokens (row-major) not yet in `sums`.
    pending: Vec<f32>,
    /// Σxxᵀ so far (f64, `[in, in]`), upper block triangle only until [`Self::flush`].
    sums: Vec<f64>,
}

/// The statistics [`SiteStats`] is rebuilt from (a saved capture).
pub(crate) struct SiteParts {
    pub layers: Vec<String>,
    pub in_features: usize,
    pub tokens: u64,
    pub min: f32,
    pub max: f32,
    pub absmax: Vec<f32>,
    pub sum_sq: Vec<f64>,
    pub sum_abs: Option<Vec<f64>>,
    pub gram: Option<Tensor>,
    pub histogram: GrowingHistogram,
    pub sample: Vec<f32>,
}

impl SiteStats {
    pub(crate) fn from_parts(p: SiteParts) -> Self {
        let seen_rows = p.tokens;
        Self {
            layers: p.layers,
            in_features: p.in_features,
            tokens: p.tokens,
            min: p.min,
            max: p.max,
            absmax: p.absmax,
            sum_sq: p.sum_sq,
            sum_abs: p.sum_abs,
            gram: p.gram,
            histogram: p.histogram,
            sample: p.sample,
            seen_rows,
            rng: SmallRng::seed_from_u64(0x5eed),
            pending: Vec::new(),
            sums: Vec::new(),
        }
    }

    fn new(layers: &[&str], in_features: usize) -> Self {
        Self {
            layers: layers.iter().map(|s| (*s).to_string()).collect(),
            in_features,
            tokens: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            absmax: vec![0.0; in_features],
            sum_sq: vec![0.0; in_features],
            sum_abs: Some(vec![0.0; in_features]),
            gram: None,
            histogram: GrowingHistogram::new(),
            sample: Vec::new(),
            seen_rows: 0,
            rng: SmallRng::seed_from_u64(0x5eed),
            pending: Vec::new(),
            sums: Vec::new(),
        }
    }

    /// Rows of [`Self::sample`].
    pub fn sample_rows(&self) -> usize {
        self.sample.len() / self.in_features.max(1)
    }

    fn add(&mut self, x: &Tensor) -> candle_core::Result<()> {
        let (t, n) = x.dims2()?;
        let values: Vec<f32> = x.flatten_all()?.to_vec1()?;
        for row in values.chunks_exact(n) {
            for (j, &v) in row.iter().enumerate() {
                if v.is_finite() {
                    self.absmax[j] = self.absmax[j].max(v.abs());
                    self.sum_sq[j] += f64::from(v) * f64::from(v);
                    if let Some(a) = &mut self.sum_abs {
                        a[j] += f64::from(v.abs());
                    }
                    self.min = self.min.min(v);
                    self.max = self.max.max(v);
                }
            }
            self.keep_row(row);
        }
        self.histogram.add(&values);
        self.tokens += t as u64;
        if n <= GRAM_MAX {
            // Σxxᵀ is updated once per GRAM_BATCH tokens: a sample's few tokens would
            // make each update an n×n read-modify-write for little arithmetic.
            self.pending.extend_from_slice(&values);
            if self.pending.len() >= GRAM_BATCH * n {
                self.fold()?;
            }
        }
        Ok(())
    }

    /// Adds the waiting tokens' xᵀx into the f64 sums: one f32 matmul per block of
    /// rows, each from the diagonal rightwards (Σxxᵀ is symmetric: the lower
    /// triangle is mirrored once, in [`Self::flush`]). f32 sums over at most
    /// GRAM_BATCH tokens, then f64 (docs/numerics.md, "Activation statistics").
    fn fold(&mut self) -> candle_core::Result<()> {
        let n = self.in_features;
        if self.pending.is_empty() || n == 0 {
            return Ok(());
        }
        let rows = self.pending.len() / n;
        let x = Tensor::from_vec(std::mem::take(&mut self.pending), (rows, n), &candle_core::Device::Cpu)?;
        if self.sums.is_empty() {
            // After a flush the sums live in `gram` (one copy in memory, not two).
            self.sums = match self.gram.take() {
                Some(g) => g.flatten_all()?.to_vec1()?,
                None => vec![0.0; n * n],
            };
        }
        for r0 in (0..n).step_by(GRAM_BLOCK) {
            let b = GRAM_BLOCK.min(n - r0);
            let part = x.narrow(1, r0, b)?.t()?.matmul(&x.narrow(1, r0, n - r0)?)?;
            for (i, row) in part.to_vec2::<f32>()?.iter().enumerate() {
                let acc = &mut self.sums[(r0 + i) * n + r0..(r0 + i + 1) * n];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += f64::from(v);
                }
            }
        }
        Ok(())
    }

    /// Folds the tokens waiting for the Σxxᵀ update into it and sets `gram` (done at the end of a capture).
    fn flush(&mut self) -> candle_core::Result<()> {
        self.fold()?;
        let n = self.in_features;
        if self.sums.is_empty() {
            return Ok(());
        }
        let mut g = std::mem::take(&mut self.sums);
        for r in 0..n {
            for c in 0..r {
                g[r * n + c] = g[c * n + r];
            }
        }
        self.gram = Some(Tensor::from_vec(g, (n, n), &candle_core::Device::Cpu)?);
        Ok(())
    }

    /// Reservoir sampling (Algorithm R) of whole tokens.
    fn keep_row(&mut self, row: &[f32]) {
        let cap = (SAMPLE_VALUES / self.in_features.max(1)).max(1) as u64;
        if self.seen_rows < cap {
            self.sample.extend_from_slice(row);
        } else {
            let j = self.rng.random_range(0..=self.seen_rows);
            if j < cap {
                let at = j as usize * self.in_features;
                self.sample[at..at + self.in_features].copy_from_slice(row);
            }
        }
        self.seen_rows += 1;
    }
}

/// Every Linear input of a model over a set of samples.
#[derive(Clone, Debug, Default)]
pub struct Activations {
    pub sites: Vec<SiteStats>,
    by_layer: HashMap<String, usize>,
    /// Where the samples came from (a path or the built-in text).
    pub source: String,
    pub samples: usize,
    pub tokens: u64,
    /// The token ids of every sample, as run (the end-to-end runs reuse them).
    pub ids: Vec<Vec<u32>>,
}

impl Activations {
    /// Activations from sites built elsewhere (a saved capture).
    pub(crate) fn from_sites(sites: Vec<SiteStats>, source: String, ids: Vec<Vec<u32>>) -> Self {
        let mut by_layer = HashMap::new();
        for (i, s) in sites.iter().enumerate() {
            for l in &s.layers {
                by_layer.insert(l.clone(), i);
            }
        }
        let tokens = ids.iter().map(|s| s.len() as u64).sum();
        Self { sites, by_layer, source, samples: ids.len(), tokens, ids }
    }

    /// The statistics of `layer`'s input.
    pub fn site(&self, layer: &str) -> Option<&SiteStats> {
        self.by_layer.get(layer).map(|&i| &self.sites[i])
    }
}

struct Capture {
    acts: Activations,
}

impl Hook for Capture {
    fn input(&mut self, layers: &[&str], x: &Tensor) -> candle_core::Result<()> {
        let Some(first) = layers.first() else { return Ok(()) };
        let i = if let Some(&i) = self.acts.by_layer.get(*first) {
            i
        } else {
            let i = self.acts.sites.len();
            self.acts.sites.push(SiteStats::new(layers, x.dim(1)?));
            for l in layers {
                self.acts.by_layer.insert((*l).to_string(), i);
            }
            i
        };
        self.acts.sites[i].add(x)
    }
}

/// Runs every sample through the float model once and keeps the statistics.
/// `progress(done)` is called after each sample; `cancel` stops between samples.
pub fn capture(
    model: &Model,
    samples: &[String],
    source: &str,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize),
) -> Result<Activations> {
    let ids = samples.iter().map(|s| model.tokenize(s)).collect::<Result<Vec<_>>>()?;
    capture_with(model, &ids, source, cancel, progress)
}

/// [`capture`] of samples already tokenized.
pub fn capture_ids(model: &Model, ids: &[Vec<u32>], source: &str) -> Result<Activations> {
    capture_with(model, ids, source, &AtomicBool::new(false), &mut |_| {})
}

fn capture_with(
    model: &Model,
    ids: &[Vec<u32>],
    source: &str,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize),
) -> Result<Activations> {
    let mut hook = Capture { acts: Activations { source: source.to_string(), ..Activations::default() } };
    // Samples run packed (each alone, as one large forward); the statistics see
    // every token in sample order, as if the samples had run one by one.
    for (samples, pack) in Pack::split(ids, PACK_TOKENS) {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        model.forward_pack(&pack, &mut hook)?;
        hook.acts.samples += samples.len();
        hook.acts.tokens += pack.tokens() as u64;
        hook.acts.ids.extend_from_slice(&ids[samples.clone()]);
        progress(samples.end);
    }
    for s in &mut hook.acts.sites {
        s.flush().map_err(|e| model.error(&e))?;
    }
    Ok(hook.acts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A site of `n` inputs fed two tokens; its Σxxᵀ entries (0, n−1) and (n−1, 0).
    fn site_of_width(n: usize) -> (f64, f64) {
        let x: Vec<f32> = (0..2 * n).map(|i| (i % 7) as f32 + 1.0).collect();
        let mut s = SiteStats::new(&["w"], n);
        s.add(&Tensor::from_slice(&x, (2, n), &candle_core::Device::Cpu).expect("tensor")).expect("add");
        s.flush().expect("flush");
        let g: Vec<Vec<f64>> = s.gram.as_ref().expect("gram").to_vec2().expect("vec2");
        let direct = f64::from(x[0] * x[n - 1] + x[n] * x[2 * n - 1]);
        assert_eq!(g[0][n - 1], direct);
        (g[0][n - 1], g[n - 1][0])
    }

    #[test]
    fn growing_histogram_keeps_every_count_and_the_range() {
        let mut h = GrowingHistogram::new();
        h.add(&[0.1, -0.2, 0.3]);
        let before = h.half_range;
        h.add(&[5.0, -7.5, f32::NAN]);
        assert!(h.half_range > before && h.half_range >= 7.5);
        let hist = h.histogram();
        assert_eq!(hist.counts.iter().sum::<u64>(), 5);
        assert!(hist.lo <= -7.5 && hist.hi >= 5.0 && hist.hi - hist.lo < 2.0 * h.half_range);
    }

    #[test]
    fn site_moments_equal_direct_sums_and_the_sample_is_bounded() {
        let n = 4;
        let rows = SAMPLE_VALUES / n + 10;
        let data: Vec<f32> = (0..rows * n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 10.0).collect();
        let mut s = SiteStats::new(&["a", "b"], n);
        for chunk in data.chunks(n * 1000) {
            let x =
                Tensor::from_slice(chunk, (chunk.len() / n, n), &candle_core::Device::Cpu).expect("tensor");
            s.add(&x).expect("add");
        }
        s.flush().expect("flush");
        assert_eq!(s.tokens, rows as u64);
        assert_eq!(s.sample_rows(), SAMPLE_VALUES / n);
        let direct: f64 = data.iter().skip(1).step_by(n).map(|&v| f64::from(v) * f64::from(v)).sum();
        assert!((s.sum_sq[1] - direct).abs() <= 1e-9 * direct);
        let g: Vec<Vec<f64>> = s.gram.as_ref().expect("gram").to_vec2().expect("vec2");
        // Σxxᵀ sums each batch of tokens in f32 (docs/numerics.md): ≈ 1e-7 relative here.
        assert!((g[1][1] - direct).abs() <= 1e-6 * direct, "{} vs {direct}", g[1][1]);
        // Exactly symmetric, also across GRAM_BLOCK (the lower triangle is mirrored).
        assert_eq!(g[0][3], g[3][0]);
        let (upper, lower) = site_of_width(GRAM_BLOCK + 44);
        assert!(upper > 0.0 && upper == lower);
        assert_eq!(s.absmax[0], data.iter().step_by(n).fold(0f32, |m, v| m.max(v.abs())));
    }
}

/// Builds sites by hand for other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::SiteStats;

    pub fn site(n: usize) -> SiteStats {
        SiteStats::new(&["layer.weight"], n)
    }

    pub fn add(site: &mut SiteStats, x: &[f32], n: usize) {
        let t =
            candle_core::Tensor::from_slice(x, (x.len() / n, n), &candle_core::Device::Cpu).expect("tensor");
        site.add(&t).expect("add");
        site.flush().expect("flush");
    }
}
