//! The centre view: the selected tensor's weight histogram with the clipping
//! range on top (draggable lines labelled with their values, shaded clipped
//! tails, zero-point marker), optionally the quantization grid and every
//! calibration's clip points; value ticks at any scale; hover shows a bin's
//! value range and count; scroll to zoom, right-drag to box-zoom, double-click
//! to reset; lo / hi fields to type the range.
//!
//! egui_plot has no draggable item, so a drag that starts near a range line
//! moves that line (the pattern of rerun's time cursor). Dragging and typing go
//! through the same pure mapping, [`drag_calibration`], so they agree.

use eframe::egui::{self, Color32, RichText};
use egui_plot::{
    AxisHints, Bar, BarChart, HoverPosition, Plot, PlotPoint, PlotTransform, PlotUi, Span, Text, VLine,
};
use quantscope_engine::explain;
use quantscope_engine::{Calibration, Granularity, Histogram, ManualRange, Mapping, QuantResult, Scheme};

use super::{Swatch, calibration_label, granularity_label, legend_item, ticks};
use crate::gui::command::{Command, DialogPurpose};
use crate::gui::state::AppState;
use crate::gui::worker::Analysis;

/// Which end of the clipping range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    Lo,
    Hi,
}

/// Where the two range lines are drawn: the per-tensor range, or for per-channel
/// and per-group schemes the envelope of the slices' ranges (a manual ratio r
/// draws them at r × the tensor's extremes).
pub fn range_lines(scheme: &Scheme, r: &QuantResult) -> (f64, f64) {
    if r.granularity == Granularity::Tensor {
        return r.params.first().map_or((0.0, 0.0), |p| (f64::from(p.lo), f64::from(p.hi)));
    }
    let (mn, mx) = r.stats.range();
    if let Calibration::Manual(ManualRange::Ratio { r: ratio }) = scheme.calibration {
        return (f64::from(mn * ratio), f64::from(mx * ratio));
    }
    let lo = r.params.iter().map(|p| p.lo).fold(f32::INFINITY, f32::min);
    let hi = r.params.iter().map(|p| p.hi).fold(f32::NEG_INFINITY, f32::max);
    if lo.is_finite() && hi.is_finite() {
        (f64::from(lo), f64::from(hi))
    } else {
        (f64::from(mn), f64::from(mx))
    }
}

/// The methods the "all calibration methods" overlay shows, by the engine's
/// labels: "min-max, percentile, MSE and KL-entropy".
pub fn compared_methods() -> String {
    let labels = quantscope_engine::calibrate::compared(0.0).map(|c| c.info().label);
    match labels.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => labels.join(""),
    }
}

/// The manual calibration that puts `edge` at `x`. Per-tensor: a range (symmetric
/// mirrors it to ±|x|). Per-channel / per-group: a ratio of each slice's range.
pub fn drag_calibration(scheme: &Scheme, r: &QuantResult, edge: Edge, x: f64) -> Calibration {
    let (lo, hi) = range_lines(scheme, r);
    if r.granularity == Granularity::Tensor {
        let (lo, hi) = match (scheme.mapping, edge) {
            (Mapping::Symmetric, _) => (-x.abs(), x.abs()),
            (Mapping::Asymmetric, Edge::Lo) => (x.min(hi), hi),
            (Mapping::Asymmetric, Edge::Hi) => (lo, x.max(lo)),
        };
        return Calibration::Manual(ManualRange::Range { lo: lo as f32, hi: hi as f32 });
    }
    let (mn, mx) = r.stats.range();
    let extreme = match edge {
        Edge::Lo if mn < 0.0 => f64::from(mn),
        Edge::Hi if mx > 0.0 => f64::from(mx),
        _ => f64::from(mn.abs().max(mx.abs())),
    };
    let ratio = if extreme == 0.0 { 1.0 } else { (x / extreme).abs().clamp(0.001, 1.0) };
    Calibration::Manual(ManualRange::Ratio { r: ratio as f32 })
}

const CLIP_FILL: Color32 = Color32::from_rgba_premultiplied(120, 30, 30, 60);
const CLIP_COLOR: Color32 = Color32::from_rgb(230, 80, 70);
const BAR_COLOR: Color32 = Color32::from_rgb(100, 140, 200);
const ZERO_COLOR: Color32 = Color32::from_rgb(240, 228, 66);
const OVERLAY_COLOR: Color32 = Color32::from_rgb(240, 150, 40);
/// Round-to-nearest's R′ beside GPTQ's (drawn in OVERLAY_COLOR).
const NEAREST_COLOR: Color32 = Color32::from_rgb(90, 200, 220);

/// A step line drawn over R's bars: its label, colour and histogram.
pub(super) type Overlay<'a> = (&'static str, Color32, &'a Histogram);

/// The R′ lines over the histogram: the published R′ when it is shown, or
/// round-to-nearest's and the method's under a GPTQ or AWQ scheme.
fn overlays(a: &Analysis) -> Vec<Overlay<'_>> {
    if let Some(h) =
        a.published.as_ref().filter(|_| a.showing_published).and_then(|p| p.dequantized_histogram.as_ref())
    {
        return vec![("published R'", OVERLAY_COLOR, h)];
    }
    let lines = match (&a.gptq, &a.awq) {
        (Some(g), _) => [("GPTQ R'", g.rtn_histogram.as_ref(), g.gptq_histogram.as_ref())],
        (None, Some(w)) => [("AWQ R'", w.rtn_histogram.as_ref(), w.awq_histogram.as_ref())],
        _ => return Vec::new(),
    };
    let [(label, nearest, method)] = lines;
    [("nearest R'", NEAREST_COLOR, nearest), (label, OVERLAY_COLOR, method)]
        .into_iter()
        .filter_map(|(l, c, h)| h.map(|h| (l, c, h)))
        .collect()
}
const METHOD_COLORS: [Color32; 4] = [
    Color32::from_rgb(230, 159, 0),
    Color32::from_rgb(86, 180, 233),
    Color32::from_rgb(0, 158, 115),
    Color32::from_rgb(204, 121, 167),
];

#[derive(Default)]
pub struct HistogramPanel {
    /// The edge being dragged.
    drag: Option<Edge>,
    /// Numbers the drags, so one drag is one undo step.
    gesture: u64,
    lo_text: String,
    hi_text: String,
    /// The range the two fields were last filled from.
    fields_for: Option<(f64, f64)>,
    /// Where the plot was drawn last frame (for "PNG…").
    rect: Option<egui::Rect>,
    /// Value ↔ screen mapping of the last frame.
    transform: Option<PlotTransform>,
    /// The value under the pointer last frame (the readout row).
    hover_x: Option<f64>,
    /// Where the lo and hi labels were drawn last frame.
    label_rects: Vec<egui::Rect>,
}

/// What happened on the plot this frame.
struct PlotOutcome {
    hover_x: Option<f64>,
    drag_start: Option<Edge>,
    drag_x: Option<f64>,
    clicked_x: Option<f64>,
}

/// Everything the plot draws, prepared before drawing (the activation view draws
/// the same items).
pub(super) struct PlotData<'a> {
    pub hist: &'a Histogram,
    pub log: bool,
    pub lo: f64,
    pub hi: f64,
    pub view: (f64, f64),
    pub grid: &'a [f32],
    pub methods: &'a [(Calibration, quantscope_engine::SliceParams)],
    pub zero: Option<(f64, String)>,
    pub dragging: Option<Edge>,
    /// What the bars count, for the legend ("weights", "activations").
    pub what: &'static str,
}

impl HistogramPanel {
    /// The y range the plot showed last frame (tests: the axis must follow the data).
    pub fn shown_y_range(&self) -> Option<(f64, f64)> {
        self.transform.as_ref().map(|t| (t.bounds().min()[1], t.bounds().max()[1]))
    }

    pub fn is_dragging(&self) -> bool {
        self.drag.is_some()
    }

    /// Where the lo and hi labels were drawn last frame (tests: they never overlap).
    pub fn clip_label_rects(&self) -> &[egui::Rect] {
        &self.label_rects
    }

    /// Where the plot was drawn last frame.
    pub fn plot_rect(&self) -> Option<egui::Rect> {
        self.rect
    }

    /// Where value `x` was drawn last frame (tests drag the range lines with it).
    pub fn screen_pos(&self, x: f64) -> Option<egui::Pos2> {
        let t = self.transform.as_ref()?;
        Some(egui::pos2(t.position_from_point_x(x), t.frame().center().y))
    }

    pub fn ui(&mut self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let Some(name) = state.selected.clone() else {
            let text = if state.model.is_some() {
                "Select a layer on the left."
            } else {
                "No model open: File > Open…"
            };
            ui.centered_and_justified(|ui| ui.label(text));
            return;
        };
        if let Some(reason) = state.selected_info().and_then(|t| t.not_quantizable.clone()) {
            ui.heading(&name);
            ui.label(format!("Not quantizable: {reason}"));
            return;
        }
        if let Some(why) = &state.analysis_failed {
            ui.heading(&name);
            ui.label(format!("Nothing to show under this scheme: {why}"));
            return;
        }
        let Some(a) = state.selected_analysis().cloned() else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("Analyzing {name}…"));
            });
            return;
        };
        // The published R′ is drawn under its own stored scheme.
        let scheme = state.analysis_scheme(&a);
        header_ui(ui, &a);
        self.toolbar_ui(state, ui, out);
        let r = &a.result;
        let Some(hist) = &r.histogram else { return };
        let (lo, hi) = range_lines(&scheme, r);
        // Per-tensor: the tensor's grid; otherwise the grid of the slice (block,
        // group, channel) selected in "How it works".
        let slice_grid: Vec<f32> = match r.params.get(state.teach_slice.min(r.params.len().saturating_sub(1)))
        {
            Some(p) if state.prefs.show_grid && r.granularity != Granularity::Tensor => {
                explain::slice_levels(scheme.format, p, r.work, r.global_scale)
                    .into_iter()
                    .filter(|&l| f64::from(l) >= hist.lo && f64::from(l) <= hist.hi)
                    .collect()
            }
            _ => Vec::new(),
        };
        let data = PlotData {
            hist,
            log: state.prefs.log_counts,
            lo,
            hi,
            view: (hist.lo.min(lo), hist.hi.max(hi)),
            grid: if !state.prefs.show_grid {
                &[]
            } else if r.granularity == Granularity::Tensor {
                &r.grid
            } else {
                &slice_grid
            },
            methods: &a.calibration_ranges,
            zero: zero_marker(&scheme, r),
            dragging: self.drag,
            what: "weights",
        };
        // The rows under the plot go in first (bottom up), so the plot takes what is
        // left and nothing overlaps whatever their wrapping.
        let hover = self.hover_x;
        let lines = overlays(&a);
        egui::Panel::bottom("histogram_rows").show_separator_line(false).show(ui, |ui| {
            plot_legend_ui(ui, &data, &lines);
            readout_ui(ui, hist, hover);
            self.range_fields_ui(ui, &name, &scheme, r, (lo, hi), out);
            methods_legend_ui(ui, &a.calibration_ranges);
        });
        let outcome = self.plot_ui(ui, &data, &lines);
        self.hover_x = outcome.hover_x;
        // The published range is what it is: dragging would edit the scheme, not it.
        if !a.showing_published {
            self.apply_outcome(&outcome, &name, &scheme, r, out);
        }
    }

    fn toolbar_ui(&self, state: &AppState, ui: &mut egui::Ui, out: &mut Vec<Command>) {
        let mut p = state.prefs.clone();
        ui.horizontal_wrapped(|ui| {
            ui.checkbox(&mut p.log_counts, "log counts");
            ui.checkbox(&mut p.show_grid, "quantization grid").on_hover_text(
                "the dequantized levels S·(Q − Z): the tensor's, or for per-channel, per-group and \
                     per-block schemes those of the slice chosen in How it works",
            );
            ui.checkbox(&mut p.show_all_calibrations, "all calibration methods")
                .on_hover_text(format!("where {} would clip this tensor", compared_methods()));
            if let Some(rect) = self.rect
                && ui.small_button("PNG…").on_hover_text("Save the histogram as a PNG image").clicked()
            {
                out.push(Command::ShowDialog(DialogPurpose::Png { what: "histogram".into(), rect }));
            }
        });
        if p != state.prefs {
            out.push(Command::SetPrefs(p));
        }
    }

    /// The histogram; each of `lines` (an R′ over the same bins) is drawn over
    /// R as a step line.
    fn plot_ui(&mut self, ui: &mut egui::Ui, d: &PlotData<'_>, lines: &[Overlay<'_>]) -> PlotOutcome {
        let hist = d.hist;
        let x_axis = AxisHints::new_x()
            .label("weight value R")
            .formatter(ticks::axis_label)
            .label_spacing(40.0..=60.0);
        let response = Plot::new("weights")
            .allow_drag(false)
            .allow_scroll(false)
            .allow_zoom(true)
            .allow_boxed_zoom(true)
            .allow_double_click_reset(true)
            .include_x(d.view.0)
            .include_x(d.view.1)
            .include_y(0.0)
            .grid_spacing(ticks::GRID_SPACING_MIN_PX..=300.0)
            .x_grid_spacer(ticks::grid_spacer)
            .custom_x_axes(vec![x_axis])
            .y_axis_label(if d.log { "log10(count + 1)" } else { "count" })
            .label_formatter(|pos| {
                let (HoverPosition::NearDataPoint { position, .. } | HoverPosition::Elsewhere { position }) =
                    pos;
                bin_label(hist, position.x)
            })
            .show(ui, |plot_ui| {
                let labels = draw_items(plot_ui, d);
                // R′ piles up on its grid levels (zero above all): a line taller
                // than R's bars is cut a little above them, so R stays readable.
                let cap = hist.counts.iter().max().map_or(0.0, |&m| m as f64 * 1.15);
                for &(label, color, h) in lines {
                    plot_ui.line(overlay_line(h, d.log, cap).name(label).color(color));
                }
                (plot_interaction(plot_ui, d.lo, d.hi), labels)
            });
        let (outcome, labels) = response.inner;
        self.label_rects = labels;
        self.rect = Some(response.response.rect);
        self.transform = Some(response.transform);
        if response.response.drag_stopped() {
            self.drag = None;
        }
        outcome
    }

    fn apply_outcome(
        &mut self,
        o: &PlotOutcome,
        layer: &str,
        scheme: &Scheme,
        r: &QuantResult,
        out: &mut Vec<Command>,
    ) {
        if let Some(e) = o.drag_start {
            self.drag = Some(e);
            self.gesture += 1;
        }
        if let (Some(e), Some(x)) = (self.drag, o.drag_x) {
            let calibration = drag_calibration(scheme, r, e, x);
            if calibration != scheme.calibration {
                let scheme = Scheme { calibration, ..*scheme };
                out.push(Command::SetLayerScheme {
                    layer: layer.into(),
                    scheme,
                    gesture: Some(self.gesture),
                });
            }
        }
        if let Some(x) = o.clicked_x {
            out.push(Command::PickValue(x as f32));
        }
    }

    /// lo / hi fields: type a value and press Enter; the same mapping as a drag.
    fn range_fields_ui(
        &mut self,
        ui: &mut egui::Ui,
        layer: &str,
        scheme: &Scheme,
        r: &QuantResult,
        range: (f64, f64),
        out: &mut Vec<Command>,
    ) {
        if self.fields_for != Some(range) && !ui.ctx().text_edit_focused() {
            self.lo_text = format!("{:.6e}", range.0);
            self.hi_text = format!("{:.6e}", range.1);
            self.fields_for = Some(range);
        }
        ui.horizontal_wrapped(|ui| {
            ui.label("Clip range");
            for (edge, label) in [(Edge::Lo, "lo"), (Edge::Hi, "hi")] {
                let text = if edge == Edge::Lo { &mut self.lo_text } else { &mut self.hi_text };
                let l = ui.label(label);
                let resp = ui.add(
                    egui::TextEdit::singleline(text).desired_width(110.0).font(egui::TextStyle::Monospace),
                );
                let resp = resp.labelled_by(l.id);
                let entered = resp.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if entered {
                    match text.trim().parse::<f64>() {
                        Ok(x) if x.is_finite() => {
                            let calibration = drag_calibration(scheme, r, edge, x);
                            let scheme = Scheme { calibration, ..*scheme };
                            out.push(Command::SetLayerScheme { layer: layer.into(), scheme, gesture: None });
                            self.fields_for = None;
                        }
                        _ => {
                            ui.colored_label(ui.visuals().error_fg_color, format!("{label}: not a number"));
                        }
                    }
                }
            }
            if r.granularity != Granularity::Tensor {
                ui.weak("(ratio)")
                    .on_hover_text("Per-channel / per-group: the value sets a ratio of each slice's range");
            }
        });
    }
}

/// An R′ histogram as a step line over R's bars.
fn overlay_line(h: &Histogram, log: bool, cap: f64) -> egui_plot::Line<'static> {
    let w = h.bin_width();
    let y = |c: u64| {
        let c = (c as f64).min(cap);
        if log { (c + 1.0).log10() } else { c }
    };
    let pts: Vec<[f64; 2]> = h
        .counts
        .iter()
        .enumerate()
        .flat_map(|(i, &c)| {
            let x = h.lo + i as f64 * w;
            [[x, y(c)], [x + w, y(c)]]
        })
        .collect();
    egui_plot::Line::new("published R'", pts).color(OVERLAY_COLOR).width(1.5)
}

fn header_ui(ui: &mut egui::Ui, a: &Analysis) {
    ui.horizontal_wrapped(|ui| {
        ui.heading(&a.tensor);
        ui.label(format!("{:?} · {}", a.shape, granularity_label(&a.result.granularity)));
        if let Some(p) = a.published.as_ref().filter(|_| a.showing_published) {
            ui.colored_label(
                Color32::from_rgb(240, 150, 40),
                format!("published: {} ({})", p.stored.short, p.stored.format),
            )
            .on_hover_text(
                "R against the compared checkpoint's R' (orange line); the error plots use it too",
            );
        }
        if let Some(f) = &a.result.fallback {
            ui.colored_label(Color32::from_rgb(230, 160, 40), f);
        }
    });
}

/// Where the zero point sits on the value axis, and what to call it.
fn zero_marker(scheme: &Scheme, r: &QuantResult) -> Option<(f64, String)> {
    let p = r.params.first()?;
    Some(match (scheme.format.is_fp8(), scheme.mapping) {
        (true, Mapping::Asymmetric) => (f64::from(p.offset), format!("offset c = {:+.4}", p.offset)),
        (false, Mapping::Asymmetric) => (0.0, format!("real 0.0 = code Z = {}", p.zero_point)),
        _ => (0.0, "real 0.0 = code Z = 0".to_string()),
    })
}

fn bars(hist: &Histogram, log: bool) -> Vec<Bar> {
    let width = hist.bin_width();
    hist.counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let h = if log { (c as f64 + 1.0).log10() } else { c as f64 };
            Bar::new(hist.lo + (i as f64 + 0.5) * width, h).width(width)
        })
        .collect()
}

/// The hover label: the bin under x, its value range and its count.
fn bin_label(hist: &Histogram, x: f64) -> Option<String> {
    let (a, b, count) = bin_at(hist, x)?;
    Some(format!("R in [{a:+.5e}, {b:+.5e})\ncount {count}"))
}

fn bin_at(hist: &Histogram, x: f64) -> Option<(f64, f64, u64)> {
    if !(x >= hist.lo && x <= hist.hi) || hist.counts.is_empty() {
        return None;
    }
    let w = hist.bin_width();
    let i = (((x - hist.lo) / w) as usize).min(hist.counts.len() - 1);
    Some((hist.lo + i as f64 * w, hist.lo + (i + 1) as f64 * w, hist.counts[i]))
}

/// Draws the plot's items; returns the clip labels' screen rectangles.
pub(super) fn draw_items(plot_ui: &mut PlotUi<'_>, d: &PlotData<'_>) -> Vec<egui::Rect> {
    plot_ui.bar_chart(BarChart::new(d.what, bars(d.hist, d.log)).color(BAR_COLOR));
    if d.lo > d.view.0 {
        plot_ui.span(Span::new("clipped", d.view.0..=d.lo).fill(CLIP_FILL));
    }
    if d.hi < d.view.1 {
        plot_ui.span(Span::new("clipped", d.hi..=d.view.1).fill(CLIP_FILL));
    }
    for &g in d.grid {
        plot_ui.vline(VLine::new("grid levels", f64::from(g)).color(Color32::from_gray(110)).width(0.5));
    }
    for (k, (c, p)) in d.methods.iter().enumerate() {
        let color = METHOD_COLORS[k % METHOD_COLORS.len()];
        let label = calibration_label(c);
        plot_ui.vline(VLine::new(label.clone(), f64::from(p.lo)).color(color).width(1.5));
        plot_ui.vline(VLine::new(label, f64::from(p.hi)).color(color).width(1.5));
    }
    if let Some((x, label)) = &d.zero {
        plot_ui.vline(VLine::new(label.clone(), *x).color(ZERO_COLOR).width(1.0));
    }
    // The labels sit at the tallest bar: a height taken from the plot's own bounds
    // would feed back into its auto-bounds and grow the y axis frame after frame.
    let tallest = d.hist.counts.iter().max().copied().unwrap_or(0) as f64;
    let top = if d.log { (tallest + 1.0).log10() } else { tallest };
    let texts = [(Edge::Lo, d.lo, "lo"), (Edge::Hi, d.hi, "hi")]
        .map(|(edge, x, name)| (edge, x, format!(" {name} {} ", ticks::value_label(x))));
    let transform = *plot_ui.transform();
    let at = |x: f64| transform.position_from_point(&PlotPoint::new(x, top));
    let frame = *transform.frame();
    let widths = texts.clone().map(|(.., t)| label_width(&t));
    let places = clip_label_places([at(d.lo).x, at(d.hi).x], (frame.left(), frame.right()), widths);
    let mut rects = Vec::new();
    for ((edge, x, text), (anchor, line)) in texts.into_iter().zip(places) {
        let color = if d.dragging == Some(edge) { Color32::WHITE } else { CLIP_COLOR };
        plot_ui.vline(VLine::new("clip range (drag)", x).color(color).width(2.5));
        let pos = at(x) + egui::vec2(0.0, f32::from(line) * LABEL_HEIGHT);
        let width = label_width(&text);
        let left = if anchor == egui::Align2::LEFT_TOP { pos.x } else { pos.x - width };
        rects.push(egui::Rect::from_min_size(egui::pos2(left, pos.y), egui::vec2(width, LABEL_HEIGHT)));
        let text = RichText::new(text).size(14.0).strong();
        let point = transform.value_from_position(pos);
        plot_ui.text(Text::new("clip range (drag)", point, text).color(color).anchor(anchor));
    }
    rects
}

/// A clip label's height and its width estimated from its length (14 pt bold;
/// digits and signs are about 8.6 px wide), with room to spare.
const LABEL_HEIGHT: f32 = 18.0;
fn label_width(text: &str) -> f32 {
    text.chars().count() as f32 * 8.6
}

/// Where the lo and hi labels go, given their lines' x on screen, the plot's
/// left and right edges and the labels' widths: (anchor, line) each. Inside
/// the range when both fit between the lines (they never run off the plot);
/// else each outside its line where the plot has room; a label that still
/// overlaps the other drops a line.
pub fn clip_label_places(x: [f32; 2], (left, right): (f32, f32), w: [f32; 2]) -> [(egui::Align2, u8); 2] {
    const LEFT_TOP: egui::Align2 = egui::Align2::LEFT_TOP;
    const RIGHT_TOP: egui::Align2 = egui::Align2::RIGHT_TOP;
    const GAP: f32 = 4.0;
    if x[1] - x[0] >= w[0] + w[1] + GAP {
        return [(LEFT_TOP, 0), (RIGHT_TOP, 0)];
    }
    let lo = if x[0] - w[0] >= left { RIGHT_TOP } else { LEFT_TOP };
    let hi = if x[1] + w[1] <= right { LEFT_TOP } else { RIGHT_TOP };
    let span = |x: f32, w: f32, a: egui::Align2| if a == LEFT_TOP { (x, x + w) } else { (x - w, x) };
    let (a, b) = (span(x[0], w[0], lo), span(x[1], w[1], hi));
    let overlap = a.0 < b.1 + GAP && b.0 < a.1 + GAP;
    [(lo, 0), (hi, u8::from(overlap))]
}

/// Drag, click, hover and scroll-zoom on the plot.
fn plot_interaction(plot_ui: &mut PlotUi<'_>, lo: f64, hi: f64) -> PlotOutcome {
    let resp = plot_ui.response().clone();
    let pointer = plot_ui.pointer_coordinate();
    if resp.hovered() {
        let scroll = plot_ui.ctx().input(|i| i.smooth_scroll_delta.y);
        if scroll != 0.0 {
            plot_ui.zoom_bounds_around_hovered(egui::vec2((scroll / 200.0).exp(), 1.0));
        }
    }
    let mut out =
        PlotOutcome { hover_x: pointer.map(|p| p.x), drag_start: None, drag_x: None, clicked_x: None };
    // Where the press began: by the time a drag is recognised the pointer has moved on.
    let origin = plot_ui.ctx().input(|i| i.pointer.press_origin());
    if resp.drag_started_by(egui::PointerButton::Primary)
        && let Some(pos) = origin
    {
        let near = |x: f64| (plot_ui.screen_from_plot(PlotPoint::new(x, 0.0)).x - pos.x).abs();
        let (dl, dh) = (near(lo), near(hi));
        if dl.min(dh) < 8.0 {
            out.drag_start = Some(if dl <= dh { Edge::Lo } else { Edge::Hi });
        }
    }
    if resp.dragged_by(egui::PointerButton::Primary) {
        out.drag_x = pointer.map(|p| p.x);
    }
    if resp.clicked() {
        out.clicked_x = pointer.map(|p| p.x);
    }
    out
}

/// What the plot's marks mean, in a row under it (inside, a legend hid bars).
pub(super) fn plot_legend_ui(ui: &mut egui::Ui, d: &PlotData<'_>, lines: &[Overlay<'_>]) {
    ui.horizontal_wrapped(|ui| {
        legend_item(ui, BAR_COLOR, Swatch::Block, d.what);
        legend_item(ui, CLIP_COLOR, Swatch::Rule, "clip range (drag)");
        legend_item(ui, Color32::from_rgb(150, 60, 60), Swatch::Block, "clipped");
        if !d.grid.is_empty() {
            legend_item(ui, Color32::from_gray(110), Swatch::Rule, "grid levels");
        }
        if let Some((_, label)) = &d.zero {
            legend_item(ui, ZERO_COLOR, Swatch::Rule, label);
        }
        for &(label, color, _) in lines {
            legend_item(ui, color, Swatch::Line, label);
        }
    });
}

/// One line, always: a hint that wrapped to two lines while the bin readout
/// takes one would resize the plot under the pointer.
fn readout_ui(ui: &mut egui::Ui, hist: &Histogram, hover_x: Option<f64>) {
    let text = match hover_x.and_then(|x| bin_at(hist, x)) {
        Some((a, b, c)) => RichText::new(format!("bin [{a:+.5e}, {b:+.5e})  count {c}")).monospace(),
        None => RichText::new(
            "Hover: bin and count · click: worked example · drag a red line: clip by hand · scroll: zoom · \
             right-drag: box zoom · double-click: reset",
        )
        .weak(),
    };
    let full = text.text().to_string();
    ui.add(egui::Label::new(text).truncate()).on_hover_text(full);
}

pub(super) fn methods_legend_ui(
    ui: &mut egui::Ui,
    methods: &[(Calibration, quantscope_engine::SliceParams)],
) {
    if methods.is_empty() {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        for (k, (c, p)) in methods.iter().enumerate() {
            ui.colored_label(
                METHOD_COLORS[k % METHOD_COLORS.len()],
                format!("{}: [{:+.4}, {:+.4}]", calibration_label(c), p.lo, p.hi),
            );
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantscope_engine::{Options, analyze};

    fn result(scheme: &Scheme) -> QuantResult {
        let v: Vec<f32> = (0..400).map(|i| (i as f32 - 200.0) / 100.0).collect();
        analyze(&v, &[4, 100], scheme, &Options::default()).unwrap()
    }

    #[test]
    fn clip_labels_go_inside_outside_or_a_line_lower() {
        const LEFT_TOP: egui::Align2 = egui::Align2::LEFT_TOP;
        const RIGHT_TOP: egui::Align2 = egui::Align2::RIGHT_TOP;
        let plot = (0.0, 1000.0);
        assert_eq!(clip_label_places([100.0, 900.0], plot, [80.0, 80.0]), [(LEFT_TOP, 0), (RIGHT_TOP, 0)]);
        assert_eq!(clip_label_places([480.0, 520.0], plot, [80.0, 80.0]), [(RIGHT_TOP, 0), (LEFT_TOP, 0)]);
        // No room outside on either side: the hi label drops a line.
        assert_eq!(
            clip_label_places([30.0, 60.0], (0.0, 100.0), [80.0, 80.0]),
            [(LEFT_TOP, 0), (RIGHT_TOP, 1)]
        );
    }

    #[test]
    fn per_tensor_drag_sets_a_manual_range() {
        let s = Scheme { granularity: Granularity::Tensor, ..Scheme::default() };
        let r = result(&s);
        assert_eq!(range_lines(&s, &r), (-2.0, 2.0));
        let c = drag_calibration(&s, &r, Edge::Hi, 1.0);
        assert_eq!(c, Calibration::Manual(ManualRange::Range { lo: -1.0, hi: 1.0 }));
        let asym = Scheme { mapping: Mapping::Asymmetric, ..s };
        let r = result(&asym);
        let c = drag_calibration(&asym, &r, Edge::Lo, -0.5);
        let Calibration::Manual(ManualRange::Range { lo, hi }) = c else { panic!("range") };
        assert_eq!(lo, -0.5);
        assert!(hi > 1.9);
        // Dragging past the other edge cannot invert the range.
        let c = drag_calibration(&asym, &r, Edge::Lo, 5.0);
        let Calibration::Manual(ManualRange::Range { lo, hi }) = c else { panic!("range") };
        assert!(lo <= hi);
    }

    #[test]
    fn per_channel_drag_sets_a_ratio_and_lines_follow_it() {
        let s = Scheme::default();
        let r = result(&s);
        let c = drag_calibration(&s, &r, Edge::Hi, 0.5);
        let Calibration::Manual(ManualRange::Ratio { r: ratio }) = c else { panic!("ratio") };
        assert!((ratio - 0.5 / 1.99).abs() < 1e-6, "{ratio}");
        let s2 = Scheme { calibration: c, ..s };
        let (lo, hi) = range_lines(&s2, &result(&s2));
        assert!((hi - 0.5).abs() < 1e-6 && lo < 0.0);
    }
}
