//! Figures of runs and sweeps with plotters: SVG or PNG (by the file extension).
//!
//! * `flow`: the energy flow E/ω_N of the lowest levels against N, even and odd shells in two
//!   panels, one line per level of each (Q, S_z) sector, labelled with its sector.
//! * `thermo`: S_imp and Tχ_imp against T (log axis) with the fixed-point values (ln 4, ln 2, 0
//!   and 1/8, 1/4, 0) as dashed lines and T_K marked; for a sweep directory one line per
//!   point, coloured by the first swept parameter.
//! * `sens`: the exact derivatives dX/dθ of the observables against T, one panel per θ.
//! * `levels`: the level sensitivities dE/dθ (first derived θ) of the listed levels against N.
//!
//! Text is drawn with DejaVu Sans compiled into the binary (plotters' `ab_glyph` backend), so
//! PNG output needs no system fonts or fontconfig.

use crate::workflow::WorkflowError;
use crate::workflow::read::RunFile;
use crate::workflow::sweep::{POINTS, read_manifest};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde_json::Value;
use std::path::Path;

/// What to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Flow,
    Thermo,
    Sens,
    Levels,
}

impl What {
    pub const ALL: [What; 4] = [What::Flow, What::Thermo, What::Sens, What::Levels];

    pub fn name(self) -> &'static str {
        match self {
            What::Flow => "flow",
            What::Thermo => "thermo",
            What::Sens => "sens",
            What::Levels => "levels",
        }
    }

    pub fn from_name(s: &str) -> Option<What> {
        What::ALL.into_iter().find(|w| w.name() == s)
    }
}

/// Figure size in pixels (SVG user units).
pub const SIZE: (u32, u32) = (960, 600);

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// One curve set: a run with a label and a colour.
struct Series {
    label: String,
    color: RGBColor,
    run: RunFile,
}

/// Draw `what` for `input` (a JSONL run or a sweep directory) into `output` (.svg or .png).
pub fn plot(input: &Path, what: What, output: &Path) -> Result<(), WorkflowError> {
    register_font();
    let series = load(input)?;
    if series.len() > 1 && what != What::Thermo && what != What::Sens {
        return Err(WorkflowError::file(
            input,
            format!(
                "--what {}: for a sweep directory use thermo or sens",
                what.name()
            ),
        ));
    }
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let fail = |e: String| WorkflowError::file(output, e);
    match ext.as_deref() {
        Some("svg") => {
            let root = SVGBackend::new(output, SIZE).into_drawing_area();
            draw(&root, what, &series).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        Some("png") => {
            let root = BitMapBackend::new(output, SIZE).into_drawing_area();
            draw(&root, what, &series).map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        _ => Err(fail(
            "unknown figure format: use a .svg or .png file name".into(),
        )),
    }
}

/// Figure file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    Svg,
    Png,
}

impl Figure {
    /// The format a file name asks for (`.svg` or `.png`, any case).
    pub fn for_path(path: &Path) -> Option<Figure> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("svg") => Some(Figure::Svg),
            Some("png") => Some(Figure::Png),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Figure::Svg => "svg",
            Figure::Png => "png",
        }
    }
}

/// Draw `what` for one run held in memory (e.g. the explorer's records, see
/// [`RunFile::from_records`]) and return the bytes of the SVG or PNG file: the same drawing
/// as [`plot`], for callers that write the file themselves (atomically, with
/// [`crate::files::OutputFile`]).
pub fn render(run: &RunFile, what: What, format: Figure) -> Result<Vec<u8>, String> {
    register_font();
    let series = [Series {
        label: String::new(),
        color: RGBColor(31, 119, 180),
        run: run.clone(),
    }];
    match format {
        Figure::Svg => {
            let mut text = String::new();
            {
                let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
                draw(&root, what, &series)?;
                root.present().map_err(err)?;
            }
            Ok(text.into_bytes())
        }
        Figure::Png => {
            let (w, h) = SIZE;
            let mut rgb = vec![0u8; (w * h * 3) as usize];
            {
                let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
                draw(&root, what, &series)?;
                root.present().map_err(err)?;
            }
            let mut bytes = Vec::new();
            {
                let mut encoder = png::Encoder::new(&mut bytes, w, h);
                encoder.set_color(png::ColorType::Rgb);
                encoder.set_depth(png::BitDepth::Eight);
                let mut writer = encoder.write_header().map_err(err)?;
                writer.write_image_data(&rgb).map_err(err)?;
            }
            Ok(bytes)
        }
    }
}

fn load(input: &Path) -> Result<Vec<Series>, WorkflowError> {
    if !input.is_dir() {
        let run = RunFile::read(input)?;
        return Ok(vec![Series {
            label: String::new(),
            color: RGBColor(31, 119, 180),
            run,
        }]);
    }
    let manifest = read_manifest(input)?;
    let axis = manifest.axes.first().cloned();
    let mut runs = Vec::new();
    for p in &manifest.points {
        let path = input.join(POINTS).join(&p.file);
        if !path.is_file() {
            continue; // plotted as far as it has run; `dnrg merge` reports what is missing
        }
        let value = axis
            .as_ref()
            .and_then(|a| p.params.get(a))
            .and_then(Value::as_f64);
        let label = p
            .params
            .iter()
            .map(|(k, v)| format!("{}={}", k.rsplit('.').next().unwrap_or(k), short(v)))
            .collect::<Vec<_>>()
            .join(" ");
        runs.push((value, label, RunFile::read(&path)?));
    }
    if runs.is_empty() {
        return Err(WorkflowError::file(input, "no finished points to plot yet"));
    }
    // colour by the first axis: log scale when all its values are positive and span > 10×
    let values: Vec<f64> = runs.iter().filter_map(|r| r.0).collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let log = lo > 0.0 && hi / lo > 10.0;
    let position = |v: Option<f64>, i: usize, n: usize| -> f64 {
        match v {
            Some(v) if hi > lo => {
                if log {
                    (v.ln() - lo.ln()) / (hi.ln() - lo.ln())
                } else {
                    (v - lo) / (hi - lo)
                }
            }
            _ => i as f64 / (n.max(2) - 1) as f64,
        }
    };
    let n = runs.len();
    Ok(runs
        .into_iter()
        .enumerate()
        .map(|(i, (v, label, run))| Series {
            label,
            color: viridis(position(v, i, n)),
            run,
        })
        .collect())
}

/// A swept value for a legend: numbers to 4 significant digits.
fn short(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{:.3e}", x)
            .parse::<f64>()
            .map_or(v.to_string(), |y| y.to_string()),
        None => v.as_str().map_or(v.to_string(), str::to_string),
    }
}

/// The viridis colour map at s ∈ [0, 1] (piecewise linear through five of its colours).
pub fn viridis(s: f64) -> RGBColor {
    const STOPS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let s = s.clamp(0.0, 1.0) * 4.0;
    let i = (s.floor() as usize).min(3);
    let t = s - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| (x + t * (y - x)).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

type Area<'a, DB> = DrawingArea<DB, Shift>;
/// A (Q, S_z) sector: charge and the JSON text of S_z.
type Sector = (i64, String);
/// Points (x, y) of one curve.
type Points = Vec<(f64, f64)>;

fn draw<DB: DrawingBackend>(root: &Area<DB>, what: What, series: &[Series]) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    match what {
        What::Thermo => thermo(root, series),
        What::Flow => flow(root, &series[0].run),
        What::Sens => sens(root, series),
        What::Levels => levels(root, &series[0].run),
    }
}

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for k in path {
        v = v.get(*k)?;
    }
    v.as_f64()
}

fn t_range(series: &[Series]) -> (f64, f64) {
    let ts = series
        .iter()
        .flat_map(|s| s.run.shells.iter().filter_map(|sh| f(sh, &["T"])));
    let (lo, hi) = ts.fold((f64::INFINITY, 0.0f64), |(a, b), t| (a.min(t), b.max(t)));
    if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (1e-6, 1.0)
    }
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn sci(x: &f64) -> String {
    format!("{:.0e}", x)
}

/// Lines of one observable per series against log T, with dashed reference values and T_K.
fn observable_panel<DB: DrawingBackend>(
    area: &Area<DB>,
    series: &[Series],
    key: &str,
    title: &str,
    refs: &[(f64, &str)],
    legend: bool,
) -> Result<(), String> {
    let (t_lo, t_hi) = t_range(series);
    let values = series
        .iter()
        .flat_map(|s| s.run.shells.iter().filter_map(|sh| f(sh, &["obs", key])));
    let (mut y_lo, mut y_hi) = values
        .chain(refs.iter().map(|r| r.0))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !(y_lo.is_finite() && y_hi > y_lo) {
        (y_lo, y_hi) = (0.0, 1.0);
    }
    let pad = 0.05 * (y_hi - y_lo);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((t_lo..t_hi).log_scale(), (y_lo - pad)..(y_hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("T / D")
        .y_desc(title)
        .x_label_formatter(&sci)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    for (value, name) in refs {
        chart
            .draw_series(DashedLineSeries::new(
                [(t_lo, *value), (t_hi, *value)],
                6,
                4,
                RGBColor(150, 150, 150).stroke_width(1),
            ))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                name.to_string(),
                (t_hi, *value),
                ("sans-serif", 13)
                    .into_font()
                    .color(&RGBColor(110, 110, 110))
                    .pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Right,
                        plotters::style::text_anchor::VPos::Bottom,
                    )),
            )))
            .map_err(err)?;
    }
    for s in series {
        let points: Vec<(f64, f64)> = s
            .run
            .shells
            .iter()
            .filter_map(|sh| Some((f(sh, &["T"])?, f(sh, &["obs", key])?)))
            .collect();
        let drawn = chart
            .draw_series(LineSeries::new(points, s.color.stroke_width(2)))
            .map_err(err)?;
        if legend && !s.label.is_empty() {
            let c = s.color;
            drawn.label(s.label.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
            });
        }
        if let Some(tk) = s.run.summary_value("T_K").as_f64() {
            if tk > t_lo && tk < t_hi {
                chart
                    .draw_series(DashedLineSeries::new(
                        [(tk, y_lo - pad), (tk, y_hi + pad)],
                        3,
                        3,
                        s.color.stroke_width(1),
                    ))
                    .map_err(err)?;
                if series.len() == 1 {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            "T_K".to_string(),
                            (tk, y_hi),
                            ("sans-serif", 14),
                        )))
                        .map_err(err)?;
                }
            }
        }
    }
    if legend && series.len() > 1 && series.len() <= 24 {
        legend_box(&mut chart, Some(SeriesLabelPosition::LowerRight))?;
    }
    Ok(())
}

fn thermo<DB: DrawingBackend>(root: &Area<DB>, series: &[Series]) -> Result<(), String> {
    let panels = root.split_evenly((1, 2));
    observable_panel(
        &panels[0],
        series,
        "S_imp",
        "S_imp",
        &[(4f64.ln(), "ln 4"), (2f64.ln(), "ln 2"), (0.0, "0")],
        false,
    )?;
    observable_panel(
        &panels[1],
        series,
        "Tchi_imp",
        "T chi_imp",
        &[(0.125, "1/8"), (0.25, "1/4"), (0.0, "0")],
        true,
    )
}

/// Distinct colours for sectors and observables.
fn palette(i: usize) -> RGBColor {
    const C: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let c = C[i % C.len()];
    RGBColor(c.0, c.1, c.2)
}

fn flow<DB: DrawingBackend>(root: &Area<DB>, run: &RunFile) -> Result<(), String> {
    const E_MAX: f64 = 3.0;
    let panels = root.split_evenly((1, 2));
    for (parity, area) in panels.iter().enumerate() {
        // (Q, Sz) → k-th level → points (N, E)
        let mut lines: Vec<(Sector, usize, Points)> = Vec::new();
        let mut n_max = 0.0f64;
        for sh in &run.shells {
            let n = f(sh, &["N"]).unwrap_or(0.0);
            if (n as usize) % 2 != parity {
                continue;
            }
            n_max = n_max.max(n);
            let mut count: Vec<((i64, String), usize)> = Vec::new();
            for level in sh
                .get("levels")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(e), Some(q)) = (f(level, &["E"]), level.get("Q").and_then(Value::as_i64))
                else {
                    continue;
                };
                let sz = level.get("Sz").map(|v| v.to_string()).unwrap_or_default();
                let key = (q, sz);
                let k = match count.iter_mut().find(|(s, _)| *s == key) {
                    Some((_, c)) => {
                        *c += 1;
                        *c - 1
                    }
                    None => {
                        count.push((key.clone(), 1));
                        0
                    }
                };
                match lines.iter_mut().find(|(s, j, _)| *s == key && *j == k) {
                    Some((_, _, pts)) => pts.push((n, e)),
                    None => lines.push((key, k, vec![(n, e)])),
                }
            }
        }
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "energy flow, {} N",
                    if parity == 0 { "even" } else { "odd" }
                ),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .margin_right(130)
            .build_cartesian_2d(0.0..n_max.max(1.0), 0.0..E_MAX)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("N")
            .y_desc("E / omega_N")
            .x_label_formatter(&|n| format!("{n:.0}"))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        let mut sectors: Vec<(i64, String)> = lines.iter().map(|l| l.0.clone()).collect();
        sectors.sort();
        sectors.dedup();
        let mut ends: Vec<(f64, String)> = Vec::new();
        for (key, _, pts) in &lines {
            let c = palette(sectors.iter().position(|s| s == key).unwrap_or(0));
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(1)))
                .map_err(err)?;
            if let Some(&(n, e)) = pts.last() {
                if e < E_MAX && n == n_max {
                    ends.push((e, format!("({},{})", key.0, key.1)));
                }
            }
        }
        // one label per group of (nearly) degenerate levels: its (Q, Sz) sectors
        ends.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut groups: Vec<(f64, Vec<String>)> = Vec::new();
        for (e, label) in ends {
            match groups.last_mut() {
                Some((e0, labels)) if e - *e0 < 0.04 * E_MAX => {
                    if !labels.contains(&label) {
                        labels.push(label);
                    }
                }
                _ => groups.push((e, vec![label])),
            }
        }
        for (e, labels) in groups {
            let mut text = labels.iter().take(3).cloned().collect::<Vec<_>>().join(" ");
            if labels.len() > 3 {
                text.push_str(" …");
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (n_max, e),
                    ("sans-serif", 11)
                        .into_font()
                        .color(&RGBColor(60, 60, 60))
                        .pos(plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Left,
                            plotters::style::text_anchor::VPos::Center,
                        )),
                )))
                .map_err(err)?;
        }
    }
    Ok(())
}

fn sens<DB: DrawingBackend>(root: &Area<DB>, series: &[Series]) -> Result<(), String> {
    let derive: Vec<String> = series[0]
        .run
        .derive()
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    if derive.is_empty() {
        return Err(
            "the run has no derivatives: run it with --derive (e.g. --derive eps_d,U)".into(),
        );
    }
    let observables = ["S_imp", "Tchi_imp", "n_d", "docc", "C_imp"];
    let panels = root.split_evenly((1, derive.len()));
    let (t_lo, t_hi) = t_range(series);
    for (theta, area) in derive.iter().zip(panels.iter()) {
        let curves: Vec<(usize, &str, &Series, Points)> = observables
            .iter()
            .enumerate()
            .flat_map(|(i, x)| {
                series.iter().map(move |s| {
                    let pts: Vec<(f64, f64)> = s
                        .run
                        .shells
                        .iter()
                        .filter_map(|sh| Some((f(sh, &["T"])?, f(sh, &["obs_grad", x, theta])?)))
                        .collect();
                    (i, *x, s, pts)
                })
            })
            .filter(|c| !c.3.is_empty())
            .collect();
        // a symmetric log-like squash keeps small and large sensitivities visible: asinh
        let squash = |y: f64| y.asinh();
        let (y_lo, y_hi) = value_range(curves.iter().flat_map(|c| c.3.iter().map(|p| squash(p.1))));
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("d X / d {theta}  (asinh scale)"),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((t_lo..t_hi).log_scale(), y_lo..y_hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("T / D")
            .y_desc(format!("asinh(dX/d{theta})"))
            .x_label_formatter(&sci)
            .y_label_formatter(&|y| format!("{:.2}", y.sinh()))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        let mut labelled = Vec::new();
        for (i, x, s, pts) in curves {
            let c = if series.len() == 1 {
                palette(i)
            } else {
                s.color
            };
            let drawn = chart
                .draw_series(LineSeries::new(
                    pts.into_iter().map(|(t, y)| (t, squash(y))),
                    c.stroke_width(2),
                ))
                .map_err(err)?;
            if series.len() == 1 && !labelled.contains(&x) {
                labelled.push(x);
                drawn
                    .label(format!("d{x}/d{theta}"))
                    .legend(move |(px, py)| {
                        PathElement::new(vec![(px, py), (px + 18, py)], c.stroke_width(2))
                    });
            }
        }
        if series.len() == 1 {
            legend_box(&mut chart, None)?;
        }
    }
    Ok(())
}

fn levels<DB: DrawingBackend>(root: &Area<DB>, run: &RunFile) -> Result<(), String> {
    let derive = run.derive();
    let Some(theta) = derive.first().map(|p| p.name()) else {
        return Err(
            "the run has no derivatives: run it with --derive (e.g. --derive eps_d)".into(),
        );
    };
    let mut points: Vec<((i64, String), f64, f64)> = Vec::new();
    for sh in &run.shells {
        let n = f(sh, &["N"]).unwrap_or(0.0);
        for level in sh
            .get("levels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let q = level.get("Q").and_then(Value::as_i64).unwrap_or(0);
            let sz = level.get("Sz").map(|v| v.to_string()).unwrap_or_default();
            for d in level
                .get("dE")
                .and_then(|m| m.get(theta))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(d) = d.as_f64() {
                    points.push(((q, sz.clone()), n, d));
                }
            }
        }
    }
    let n_max = points.iter().map(|p| p.1).fold(1.0f64, f64::max);
    let (lo, hi) = value_range(points.iter().map(|p| p.2.asinh()));
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("level sensitivities dE/d{theta} (asinh scale)"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n_max, lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("N")
        .x_label_formatter(&|n| format!("{n:.0}"))
        .y_desc(format!("d(E/omega_N)/d{theta}"))
        .y_label_formatter(&|y| format!("{:.2}", y.sinh()))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;
    let mut sectors: Vec<(i64, String)> = points.iter().map(|p| p.0.clone()).collect();
    sectors.sort();
    sectors.dedup();
    for (i, sector) in sectors.iter().enumerate().take(10) {
        let c = palette(i);
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.0 == *sector)
                    .map(|p| Circle::new((p.1, p.2.asinh()), 3, c.filled())),
            )
            .map_err(err)?
            .label(format!("(Q, Sz) = ({}, {})", sector.0, sector.1))
            .legend(move |(x, y)| Circle::new((x + 8, y), 3, c.filled()));
    }
    legend_box(&mut chart, None)?;
    Ok(())
}

/// The range of `values`, or [−1, 1] when they give none (no values, or all equal).
fn value_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (-1.0, 1.0)
    }
}

/// The series labels of `chart` in the figures' one style, where plotters puts them unless
/// `position` says otherwise.
fn legend_box<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: Option<SeriesLabelPosition>,
) -> Result<(), String> {
    let mut labels = chart.configure_series_labels();
    labels
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12));
    if let Some(p) = position {
        labels.position(p);
    }
    labels.draw().map_err(err)
}
