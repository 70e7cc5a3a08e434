//! The teaching panel: the formulas of the selected scheme with the live
//! numbers, and one value worked through R → Q → R'. Every number and format
//! fact comes from the engine's `explain` module; this panel only lays them out.

use eframe::egui::{self, Color32, RichText};
use quantscope_engine::calibrate::hqq::HqqSlice;
use quantscope_engine::explain::{
    BlockScaleSteps, FormatFacts, Steps, WorkedExample, block_scale_steps, facts, fp8_side_by_side,
    slice_levels, worked_example,
};
use quantscope_engine::format::E2M1_VALUES;
use quantscope_engine::ggml::{BlockScales, GgmlType, block_scales};
use quantscope_engine::{FormatKind, Mapping, SliceParams, WorkDtype};

use super::granularity_label;
use crate::gui::command::Command;
use crate::gui::state::AppState;

#[derive(Default)]
pub struct TeachPanel {}

fn mono(ui: &mut egui::Ui, s: impl Into<String>) {
    ui.label(RichText::new(s.into()).monospace());
}

impl TeachPanel {
    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let Self {} = self;
        ui.heading("How it works");
        let Some(a) = state.selected_analysis() else { return };
        let scheme = state.analysis_scheme(a);
        let r = &a.result;
        if r.params.len() > 1 {
            ui.horizontal(|ui| {
                let label = ui.label("Slice");
                let mut k = state.teach_slice.min(r.params.len() - 1);
                if ui
                    .add(egui::DragValue::new(&mut k).range(0..=r.params.len() - 1))
                    .labelled_by(label.id)
                    .changed()
                {
                    out.push(Command::SetTeachSlice(k));
                }
                if ui.small_button("worst").on_hover_text("the slice with the lowest SQNR").clicked() {
                    let worst = r
                        .slice_metrics
                        .iter()
                        .enumerate()
                        .min_by(|x, y| x.1.sqnr_db.total_cmp(&y.1.sqnr_db))
                        .map_or(0, |(i, _)| i);
                    out.push(Command::SetTeachSlice(worst));
                }
            });
        }
        let k = state.teach_slice.min(r.params.len().saturating_sub(1));
        let Some(p) = r.params.get(k).copied() else { return };
        let f = match facts(scheme.format) {
            Ok(f) => f,
            Err(e) => {
                ui.label(e.to_string());
                return;
            }
        };
        let (rmin, rmax) = r.slice_ranges.get(k).copied().unwrap_or((0.0, 0.0));
        ui.label(format!(
            "{} · {:?} mapping · {}",
            f.label,
            scheme.mapping,
            granularity_label(&r.granularity)
        ));
        mono(ui, format!("this slice: Rmin = {rmin:+.6}, Rmax = {rmax:+.6}"));
        mono(ui, format!("clipping range [lo, hi] = [{:+.6}, {:+.6}]", p.lo, p.hi));
        let amax = (-rmin).max(rmax).max(0.0);
        if let Some(ty) = scheme.format.ggml() {
            let cols = a.shape.last().copied().unwrap_or(1);
            let scales = r.ggml_blocks.as_deref().and_then(|b| block_scales(ty, b, cols, k));
            ggml_formulas_ui(ui, ty, &p, scales, (k, cols));
        } else if let Some(b) = block_scale_steps(scheme.format, amax, &p, r.work, r.global_scale) {
            micro_formulas_ui(ui, &f, scheme.format, &b);
        } else if f.is_float {
            fp8_formulas_ui(ui, &f, &p, scheme.mapping);
        } else {
            let levels = slice_levels(scheme.format, &p, r.work, r.global_scale);
            let ends = (levels.first().copied().unwrap_or(0.0), levels.last().copied().unwrap_or(0.0));
            int_formulas_ui(ui, &f, &p, scheme.mapping, ends);
        }
        work_dtype_ui(ui, r.work);
        if let Some(h) = a.hqq.get(k) {
            hqq_ui(ui, h);
        }
        ui.add_space(4.0);
        let value = state.clicked_value.unwrap_or(rmax * 0.37);
        ui.label(
            RichText::new(format!("Worked example (click the histogram to pick R): R = {value:+.6}"))
                .strong(),
        );
        match worked_example(scheme.format, &p, value, r.work, r.global_scale) {
            Ok(ex) => worked_example_ui(ui, &ex),
            Err(e) => {
                ui.label(e.to_string());
            }
        }
        if scheme.format.is_fp8() {
            fp8_comparison_ui(ui, &p, scheme.mapping, value, r.work);
        }
    }
}

/// `ends`: the first and last representable values, (Qmin − Z)·S and (Qmax − Z)·S.
fn int_formulas_ui(ui: &mut egui::Ui, f: &FormatFacts, p: &SliceParams, mapping: Mapping, ends: (f32, f32)) {
    mono(ui, format!("Qmin = {}, Qmax = {}   ({}-bit signed)", f.qmin, f.qmax, f.bits));
    match mapping {
        Mapping::Symmetric => {
            mono(ui, format!("S = D(max(|lo|, |hi|) / ((Qmax − Qmin)/2)) = {:.6e}", p.scale));
            mono(ui, "Z = 0: real 0.0 is code 0");
        }
        Mapping::Asymmetric => {
            mono(ui, format!("S = D(D(hi − lo) / (Qmax − Qmin)) = {:.6e}", p.scale));
            mono(ui, format!("Z = round(clamp(D(Qmin − D(lo/S)))) = {}: real 0.0 is code Z", p.zero_point));
        }
    }
    mono(
        ui,
        format!(
            "representable: (Qmin − Z)·S = {:+.6} … (Qmax − Z)·S = {:+.6}   (hi = {:+.6})",
            ends.0, ends.1, p.hi
        ),
    );
    if mapping == Mapping::Symmetric {
        let half = f.qmax - f.qmin;
        ui.weak(format!(
            "Convention: S spreads the range over all {half} steps, (Qmax − Qmin)/2 = {} per side, as \
             compressed-tensors does, not the textbook max/Qmax = max/{}. So hi maps to Qmax + ½ and is \
             clamped to Qmax: the last value a code holds is Qmax·S, half a step below hi.",
            f64::from(half) / 2.0,
            f.qmax
        ));
    }
    mono(ui, "Q = clamp(round(D(D(R/S) + Z)), Qmin, Qmax)");
    mono(ui, "R' = D((Q − Z) · S)");
    ui.weak(
        "Saved models (compressed-tensors) add Z before rounding, as here: on an exact tie with an odd Z \
         this differs from rounding R/S first and adding Z after.",
    );
}

/// What D is for this tensor, and what rounding to it means.
fn work_dtype_ui(ui: &mut egui::Ui, work: WorkDtype) {
    match work {
        WorkDtype::F32 => {
            ui.weak(
                "D = F32 (this tensor's dtype): every step is one f32 operation, so D(·) changes nothing.",
            );
        }
        d => {
            ui.weak(format!(
                "D = {d:?} (this tensor's dtype): every step is computed in f32 and rounded half-to-even to \
                 {d:?}, as a saved model computes; S and R' are {d:?} values."
            ));
        }
    }
}

/// What HQQ optimizes, and what storing its zero point as an integer costs.
fn hqq_ui(ui: &mut egui::Ui, h: &HqqSlice) {
    ui.add_space(4.0);
    ui.label(RichText::new("HQQ").strong());
    ui.label(
        "HQQ keeps min-max's S and moves the zero point to lower the error measured in an ℓp norm \
         (p = 0.7, which weighs many small errors over a few large ones), by half-quadratic splitting.",
    );
    mono(ui, format!("Z (real)    = {:+.5}  after {} steps", h.zero_real, h.iterations));
    mono(ui, format!("Z (rounded) = {}", h.zero_rounded));
    mono(ui, format!("Z (saved)   = {},  S (saved) = {:.6e}", h.params.zero_point, h.params.scale));
    mono(ui, format!("Σ(R − R')² with real Z    = {:.4e}", h.sse_real_zero));
    mono(ui, format!("Σ(R − R')² with rounded Z = {:.4e}", h.sse_rounded_zero));
    mono(ui, format!("Σ(R − R')² as saved       = {:.4e}", h.sse_saved));
    ui.weak(
        "A saved model stores an integer Z. The saved Z is the integer near the real one (or near \
         min-max's) whose least-squares S gives the least squared error, never more than min-max's; \
         every number on screen uses it.",
    );
}

fn fp8_formulas_ui(ui: &mut egui::Ui, f: &FormatFacts, p: &SliceParams, mapping: Mapping) {
    let fmax = f.fmax.unwrap_or(0.0);
    mono(ui, format!("fmax = {fmax} (the largest finite {})", f.label));
    mono(
        ui,
        format!(
            "{} = {} exponent bits (bias {}) + {} mantissa bits",
            f.label,
            f.exponent_bits,
            f.bias.unwrap_or(0),
            f.mantissa_bits
        ),
    );
    match mapping {
        Mapping::Symmetric => {
            mono(ui, format!("S = max(|lo|, |hi|) / fmax = {:.6e}", p.scale));
            mono(ui, "Q = fp8(clamp(D(R/S) + 0, ±fmax)),  R' = D(S · value(Q))");
        }
        Mapping::Asymmetric => {
            mono(ui, format!("c = (hi + lo)/2 = {:+.6}   (the centre of the range)", p.offset));
            mono(ui, format!("S = (hi − lo)/(2·fmax) = {:.6e}", p.scale));
            mono(ui, "Q = fp8(clamp(D(D(R − c)/S) + 0, ±fmax)),  R' = D(D(S · value(Q)) + c)");
            ui.weak(
                "c shifts the range so it is centred on 0 before scaling; no runtime loads this variant.",
            );
        }
    }
    ui.weak(
        "value(Q) = (−1)^sign · 2^(exponent − bias) · 1.mantissa (subnormals: 2^(1 − bias) · 0.mantissa)",
    );
}

/// The two levels of a microscaled format: the element grid, the global scale
/// (NVFP4), and how this block's scale is chosen and stored in 8 bits.
fn micro_formulas_ui(ui: &mut egui::Ui, f: &FormatFacts, format: FormatKind, b: &BlockScaleSteps) {
    let elem = if f.bits == 4 { "E2M1" } else { "E4M3" };
    mono(
        ui,
        format!(
            "{}: {elem} values ({} exponent bits, bias {}, {} mantissa bit(s)), one {} scale per block",
            f.label,
            f.exponent_bits,
            f.bias.unwrap_or(0),
            f.mantissa_bits,
            b.stored_as
        ),
    );
    if f.bits == 4 {
        let table: Vec<String> = E2M1_VALUES.iter().map(|v| format!("{v}")).collect();
        mono(ui, format!("E2M1 magnitudes (index 0-7): {}", table.join("  ")));
    }
    mono(ui, format!("this block: amax = {:.6e}", b.amax));
    if let Some(gs) = b.global {
        ui.label(RichText::new("Level 1: the global scale (one per tensor, F32)").strong());
        mono(ui, format!("gs = D(D(1 / amax_tensor) * 2688) = {gs:?}     (2688 = 448 * 6)"));
        ui.label(RichText::new("Level 2: this block's scale, stored as E4M3").strong());
        mono(ui, format!("s = D(amax / 6)          = {:.6e}", b.wanted));
        mono(ui, format!("gs * s                   = {:.6}", b.lifted));
        mono(ui, format!("S = E4M3(gs * s)         = {:?}   (byte 0x{:02X})", b.minmax_scale, b.code));
        mono(ui, format!("  {}", b.decoded));
        mono(ui, format!("step = S / gs (F32)      = {:.6e}", b.step));
        mono(ui, "Q = E2M1(clamp(R / step + 0, -6, 6)),  R' = BF16(value(Q) * step)");
    } else {
        ui.label(RichText::new("The block scale: a power of two, stored as E8M0").strong());
        let k = if format == FormatKind::Mxfp4 { 2 } else { 8 };
        mono(ui, format!("P = amax rounded to a power of two = {:?}", b.wanted));
        mono(ui, format!("E = clamp(log2 P + 127 - {k}, 0, 255) = {}   (byte 0x{:02X})", b.lifted, b.code));
        mono(ui, format!("S = {}", b.decoded));
        let elem_max = f.fmax.unwrap_or(0.0);
        mono(
            ui,
            format!("Q = {elem}(clamp(D(R / S) + 0, -{elem_max}, {elem_max})),  R' = BF16(value(Q) * S)"),
        );
        ui.weak(format!(
            "P rounds amax down when its significand is below 1.75, so values above {elem_max} * S = {:.4e}              clip.",
            elem_max * b.scale
        ));
    }
    if b.scale != b.minmax_scale {
        ui.weak(format!(
            "The calibration moved this block's scale from {:?} to {:?}.",
            b.minmax_scale, b.scale
        ));
    }
    ui.weak("R' of these formats is BF16 whatever the model's dtype: that is what runtimes decompress to.");
}

fn fp8_comparison_ui(ui: &mut egui::Ui, p: &SliceParams, mapping: Mapping, value: f32, work: WorkDtype) {
    ui.add_space(4.0);
    ui.label(RichText::new("E4M3 vs E5M2 for the same R and range").strong());
    let both = fp8_side_by_side(p.lo, p.hi, mapping, value, work);
    // One under the other: side by side, the bit strings overlap in a narrow panel.
    for ex in &both {
        let label = facts(ex.format).map_or_else(|_| ex.format.to_string(), |f| f.label);
        ui.label(RichText::new(label).underline());
        fp8_bits_ui(ui, ex);
        mono(ui, format!("R' = {:+.6}   error = {:+.3e}", ex.dequantized, ex.error));
    }
    let [e4, e5] = &both;
    if e4.dequantized == e5.dequantized {
        ui.weak(
            "Both give the same R': R lands on a value both grids can hold (each format scales the range \
             to its own fmax, and here the two roundings meet at the same point), or it is clipped to \
             the same end of the range.",
        );
    }
}

/// A llama.cpp type's sub-block: how its S and m come from the block's stored
/// scales, which ggml's search chose (docs/numerics.md, "llama.cpp's types").
fn ggml_formulas_ui(
    ui: &mut egui::Ui,
    ty: GgmlType,
    p: &SliceParams,
    s: Option<BlockScales>,
    at: (usize, usize),
) {
    let (k, cols) = at;
    let sub = ty.sub_block();
    let per_row = (cols / sub.max(1)).max(1);
    let (row, g) = (k / per_row, k % per_row);
    let block = ty.block as usize;
    mono(
        ui,
        format!(
            "row {row}, elements {}…{}: block {} of the row",
            g * sub,
            g * sub + sub - 1,
            g * sub / block
        ),
    );
    match s {
        Some(BlockScales { d, dmin, sc: Some(sc), mn, sc_bits }) => {
            let dmin = dmin.unwrap_or(0.0);
            mono(ui, format!("super-block d = {d:+.6e}, dmin = {dmin:+.6e} (F16)"));
            let mn = mn.map_or(String::new(), |m| format!(", min mn = {m}"));
            mono(ui, format!("sub-block {}: scale sc = {sc}{mn} ({sc_bits}-bit)", (g * sub % block) / sub));
            mono(ui, format!("S = d·sc = {:+.6e}   m = dmin·mn = {:+.6e}", p.scale, p.offset));
        }
        Some(BlockScales { d, dmin, .. }) => {
            let min = dmin.map_or(String::new(), |m| format!(", min = {m:+.6e}"));
            mono(ui, format!("block d = {d:+.6e}{min} (F16): S = d, m = {:+.6e}", p.offset));
        }
        None => mono(ui, format!("S = {:+.6e}   m = {:+.6e}", p.scale, p.offset)),
    }
    mono(ui, "R' = S · v(q) − m, v: the type's code table".to_string());
    ui.label(
        RichText::new(
            "ggml searches d, the sub-block scales and mins for the least (weighted) squared error, \
             so S is not (hi − lo)/(Qmax − Qmin) of the slice.",
        )
        .weak(),
    );
}

fn worked_example_ui(ui: &mut egui::Ui, ex: &WorkedExample) {
    match &ex.steps {
        Steps::Ggml(s) => {
            mono(ui, format!("(R + m) / S       = {:+.4}", s.position));
            mono(ui, format!("nearest code q    = {} (v(q) = {})", s.code, s.value));
            mono(ui, format!("S · v(q)          = {:+.6}", s.product));
            mono(ui, format!("− m               = {:+.6}", s.product - s.min));
        }
        Steps::Int(s) => {
            let d = s.work;
            if d == WorkDtype::F32 {
                mono(ui, format!("R / S             = {:+.4}", s.scaled));
            } else {
                mono(ui, format!("R / S             = {:+.6}", s.quotient));
                mono(ui, format!("→ {d:?}            = {:+.6}", s.scaled));
            }
            mono(ui, format!("+ Z (→ {d:?})     = {:+.6}", s.shifted));
            mono(ui, format!("round (half-even) = {:+.0}", s.rounded));
            let note = if s.clamped { "  ← clipped" } else { "" };
            mono(ui, format!("clamp to [{}, {}] → Q = {}{note}", s.qmin, s.qmax, s.q));
            product_ui(ui, d, "(Q − Z) · S", s.product);
        }
        Steps::Fp8(s) => {
            let d = s.work;
            if d == WorkDtype::F32 {
                mono(ui, format!("(R − c) / S + 0  = {:+.6}", s.scaled));
            } else {
                mono(ui, format!("(R − c) / S      = {:+.6}", s.quotient));
                mono(ui, format!("→ {d:?}, + 0      = {:+.6}", s.scaled));
            }
            let note = if s.clamped { "  ← saturated" } else { "" };
            mono(ui, format!("clamp ±{}     = {:+.6}{note}", s.fmax, s.clamped_value));
            mono(ui, format!("round to grid    = {:+.6} (code 0x{:02X})", s.value, s.code));
            fp8_bits_ui(ui, ex);
            product_ui(ui, d, "S · value(Q)", s.product);
        }
    }
    mono(ui, format!("R' = {:+.6}", ex.dequantized));
    ui.label(
        RichText::new(format!("error R − R' = {:+.3e}", ex.error))
            .monospace()
            .color(Color32::from_rgb(230, 120, 90)),
    );
}

/// The dequantizing product before its rounding to D (shown when D is not F32).
fn product_ui(ui: &mut egui::Ui, d: WorkDtype, what: &str, product: f32) {
    if d != WorkDtype::F32 {
        mono(ui, format!("{what} = {product:+.8} → rounded to {d:?}"));
    }
}

/// The code's bits coloured by field, and what they decode to.
fn fp8_bits_ui(ui: &mut egui::Ui, ex: &WorkedExample) {
    let Steps::Fp8(s) = &ex.steps else { return };
    let e = format!("{:0w$b}", s.exponent, w = s.exponent_bits as usize);
    let m = format!("{:0w$b}", s.mantissa, w = s.mantissa_bits as usize);
    ui.horizontal(|ui| {
        ui.label(RichText::new(format!("{}", s.sign)).monospace().color(Color32::from_rgb(215, 58, 73)));
        ui.label(RichText::new(e).monospace().color(Color32::from_rgb(86, 180, 233)));
        ui.label(RichText::new(m).monospace().color(Color32::from_rgb(0, 158, 115)));
        ui.weak("sign · exp · mantissa");
    });
    mono(ui, s.decoded.clone());
}
