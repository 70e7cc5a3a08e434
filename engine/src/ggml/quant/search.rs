//! The shared scale searches of ggml-quants.c (llama-cpp-python 0.3.36's
//! vendored llama.cpp): `make_qx_quants` (symmetric, weighted, rmse_type 1),
//! `make_q3_quants` (symmetric, coordinate descent), `make_qkx2_quants` /
//! `make_qkx3_quants` (scale and min, least squares over a grid of trial
//! scales) and `make_qp_quants` (non-negative scales of scales). The first
//! three run sixteen blocks in lanes (see `lanes`); `make_qp_quants` only ever
//! sees one super-block's 8 or 16 scales and stays scalar.

use super::arith::{GROUP_MAX_EPS, nearest};
use super::lanes::{F, I, clamp, nearest as nearest8, pick, pick_int, signed_max, splat, to_f, to_i};

/// `make_qx_quants(n, nmax, x, L, 1, w)`: the scale per lane and codes
/// `L ∈ [0, 2·nmax)` (code − nmax is the signed level). All-zero lanes give 0.
pub(super) fn qx<const N: usize>(x: &[F; N], w: &[F; N], nmax: i32, codes: &mut [I; N]) -> F {
    let (max, amax) = signed_max(x);
    let mut aux = [I::ZERO; N];
    let (mut sumlx, mut suml2) = levels(x, w, splat(-nmax as f32) / max, nmax, &mut aux);
    for (c, l) in codes.iter_mut().zip(&aux) {
        *c = *l + I::splat(nmax);
    }
    let mut scale = suml2.simd_ne(F::ZERO).select(sumlx / suml2, F::ZERO);
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = splat(-(nmax as f32 + 0.1 * is as f32)) / max;
        (sumlx, suml2) = levels(x, w, iscale, nmax, &mut aux);
        let better = suml2.simd_gt(F::ZERO) & (sumlx * sumlx).simd_gt(best * suml2);
        if better.any() {
            for (c, l) in codes.iter_mut().zip(&aux) {
                *c = pick_int(better, *l + I::splat(nmax), *c);
            }
            scale = pick(better, sumlx / suml2, scale);
            best = pick(better, scale * sumlx, best);
        }
    }
    let zero = amax.simd_lt(splat(GROUP_MAX_EPS));
    for c in codes.iter_mut() {
        *c = pick_int(zero, I::ZERO, *c);
    }
    pick(zero, F::ZERO, scale)
}

/// One trial of `qx`: signed levels of `iscale·x` in `[-nmax, nmax)` and the
/// weighted sums `Σ w·x·l`, `Σ w·l²`.
fn levels<const N: usize>(x: &[F; N], w: &[F; N], iscale: F, nmax: i32, out: &mut [I; N]) -> (F, F) {
    let (mut sumlx, mut suml2) = (F::ZERO, F::ZERO);
    for i in 0..N {
        let l = clamp(nearest8(iscale * x[i]), -nmax, nmax - 1);
        out[i] = l;
        let lf = to_f(l);
        sumlx += w[i] * x[i] * lf;
        suml2 += w[i] * lf * lf;
    }
    (sumlx, suml2)
}

/// `make_q3_quants(n, nmax, x, L, true)`: weights x², then up to five rounds of
/// moving one level at a time while the fit improves. A round that changes
/// nothing leaves the state as it was, so lanes that the C would have stopped
/// early may run on without effect.
pub(super) fn q3<const N: usize>(x: &[F; N], nmax: i32, codes: &mut [I; N]) -> F {
    let (max, amax) = signed_max(x);
    let w: [F; N] = std::array::from_fn(|i| x[i] * x[i]);
    let (mut sumlx, mut suml2) = levels(x, &w, splat(-nmax as f32) / max, nmax, codes);
    for _ in 0..5 {
        let mut changed = F::ZERO;
        for i in 0..N {
            let l = to_f(codes[i]);
            let wx = w[i] * x[i];
            let slx = sumlx - wx * l;
            let sl2 = suml2 - w[i] * l * l;
            let new_l = clamp(nearest8(x[i] * sl2 / slx), -nmax, nmax - 1);
            let nl = to_f(new_l);
            let (slx_new, sl2_new) = (slx + wx * nl, sl2 + w[i] * nl * nl);
            let moved: F = bytemuck::cast(new_l.simd_ne(codes[i]));
            let better = slx.simd_gt(F::ZERO)
                & moved
                & sl2_new.simd_gt(F::ZERO)
                & (slx_new * slx_new * suml2).simd_gt(sumlx * sumlx * sl2_new);
            codes[i] = pick_int(better, new_l, codes[i]);
            sumlx = pick(better, slx_new, sumlx);
            suml2 = pick(better, sl2_new, suml2);
            changed |= better;
        }
        if !changed.any() {
            break;
        }
    }
    let zero = amax.simd_lt(splat(GROUP_MAX_EPS));
    for c in codes.iter_mut() {
        *c = pick_int(zero, I::ZERO, *c + I::splat(nmax));
    }
    let scale = suml2.simd_gt(F::ZERO).select(sumlx / suml2, F::ZERO);
    pick(zero, F::ZERO, scale)
}

/// The trial grid of `make_qkx2_quants` / `make_qkx3_quants`: scales
/// `(rmin + rdelta·k + nmax) / (max − min)` for k = 0..=steps.
#[derive(Clone, Copy)]
pub(super) struct Grid {
    pub rmin: f32,
    pub rdelta: f32,
    pub steps: i32,
}

/// `make_qkx2_quants` / `make_qkx3_quants` (identical once weights are given:
/// `max <= min` and `max == min` agree after `min` is clamped to ≤ 0): codes in
/// `[0, nmax]`, and per lane (scale, −min) with x ≈ scale·L − (−min). `mad`
/// ranks trials by weighted absolute error instead of squared. Levels are kept
/// as whole-number floats while searching.
pub(super) fn qkx<const N: usize>(
    x: &[F; N],
    w: &[F; N],
    nmax: i32,
    grid: Grid,
    mad: bool,
    codes: &mut [I; N],
) -> (F, F) {
    let (mut min, mut max, mut sum_w) = (x[0], x[0], w[0]);
    let mut sum_x = sum_w * x[0];
    for i in 1..N {
        min = pick(x[i].simd_lt(min), x[i], min);
        max = pick(x[i].simd_gt(max), x[i], max);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    min = pick(min.simd_gt(F::ZERO), F::ZERO, min);
    let flat = max.simd_eq(min);
    let iscale = splat(nmax as f32) / (max - min);
    let mut scale = F::ONE / iscale;
    let mut levels: [F; N] = std::array::from_fn(|i| level(iscale * (x[i] - min), nmax));
    let mut best = error(x, w, &levels, scale, min, mad);
    let mut aux = [F::ZERO; N];
    for k in 0..=grid.steps {
        // `min` moves with each better trial, and later trials start from it.
        let iscale = splat(grid.rmin + grid.rdelta * k as f32 + nmax as f32) / (max - min);
        let (sum_l, sum_l2, sum_xl) = level_sums(x, min, w, iscale, nmax, &mut aux);
        let det = sum_w * sum_l2 - sum_l * sum_l;
        let solvable = det.simd_gt(F::ZERO);
        if !solvable.any() {
            continue;
        }
        let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        let positive = this_min.simd_gt(F::ZERO);
        this_min = pick(positive, F::ZERO, this_min);
        this_scale = pick(positive, sum_xl / sum_l2, this_scale);
        let err = error(x, w, &aux, this_scale, this_min, mad);
        let better = solvable & err.simd_lt(best);
        if better.any() {
            for (l, a) in levels.iter_mut().zip(&aux) {
                *l = pick(better, *a, *l);
            }
            best = pick(better, err, best);
            scale = pick(better, this_scale, scale);
            min = pick(better, this_min, min);
        }
    }
    for (c, l) in codes.iter_mut().zip(&levels) {
        *c = pick_int(flat, I::ZERO, to_i(*l));
    }
    (pick(flat, F::ZERO, scale), -min)
}

/// `MAX(0, MIN(nmax, nearest_int(v)))` as a float.
fn level(v: F, nmax: i32) -> F {
    to_f(clamp(nearest8(v), 0, nmax))
}

/// One trial of `qkx`: levels of `iscale·(x − min)` in `[0, nmax]` and the
/// sums `Σ w·l`, `Σ w·l²`, `Σ w·l·x`.
fn level_sums<const N: usize>(
    x: &[F; N],
    min: F,
    w: &[F; N],
    iscale: F,
    nmax: i32,
    out: &mut [F; N],
) -> (F, F, F) {
    let (mut sum_l, mut sum_l2, mut sum_xl) = (F::ZERO, F::ZERO, F::ZERO);
    for i in 0..N {
        let l = level(iscale * (x[i] - min), nmax);
        out[i] = l;
        let wl = w[i] * l;
        sum_l += wl;
        sum_l2 += wl * l;
        sum_xl += wl * x[i];
    }
    (sum_l, sum_l2, sum_xl)
}

/// `Σ w·|scale·L + min − x|` (mad) or `Σ w·(scale·L + min − x)²`.
fn error<const N: usize>(x: &[F; N], w: &[F; N], levels: &[F; N], scale: F, min: F, mad: bool) -> F {
    let mut sum = F::ZERO;
    for i in 0..N {
        let diff = scale * levels[i] + min - x[i];
        sum += w[i] * if mad { diff.abs() } else { diff * diff };
    }
    sum
}

/// `make_qp_quants(n, nmax, x, L, w)`: a non-negative scale for the
/// non-negative `x` (sub-block scales or mins), codes stored as the C's
/// `uint8_t` (a negative level wraps, and later reads see the wrapped value).
pub(super) fn qp(x: &[f32], nmax: i32, w: &[f32], codes: &mut [u8]) -> f32 {
    let max = x.iter().fold(0.0f32, |m, &v| if m > v { m } else { v });
    if max < GROUP_MAX_EPS {
        codes.fill(0);
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for (c, &v) in codes.iter_mut().zip(x) {
        *c = nearest(iscale * v) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best = 0.0f32;
    for i in 0..x.len() {
        let diff = x[i] - scale * f32::from(codes[i]);
        best += w[i] * diff * diff;
    }
    for is in (-4..=4).filter(|&is| is != 0) {
        let iscale_is = (0.1 * is as f32 + nmax as f32) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for i in 0..x.len() {
            let l = nearest(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * l as f32;
            mse += w[i] * diff * diff;
        }
        if mse < best {
            best = mse;
            iscale = iscale_is;
        }
    }
    qp_refine(x, nmax, w, iscale, codes)
}

/// The second half of `make_qp_quants`: levels at the chosen scale, then up to
/// five rounds of moving single levels while the weighted fit improves.
fn qp_refine(x: &[f32], nmax: i32, w: &[f32], iscale: f32, codes: &mut [u8]) -> f32 {
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..x.len() {
        let l = nearest(iscale * x[i]).min(nmax);
        codes[i] = l as u8;
        sumlx += w[i] * x[i] * l as f32;
        suml2 += w[i] * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for i in 0..x.len() {
            let l = f32::from(codes[i]);
            let mut slx = sumlx - w[i] * x[i] * l;
            let mut sl2 = suml2 - w[i] * l * l;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest(x[i] * sl2 / slx).min(nmax);
                if new_l != i32::from(codes[i]) {
                    slx += w[i] * x[i] * new_l as f32;
                    sl2 += w[i] * new_l as f32 * new_l as f32;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        codes[i] = new_l as u8;
                        (sumlx, suml2) = (slx, sl2);
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}
