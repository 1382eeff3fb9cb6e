//! A small plotting widget: Braille lines at 2×4 sub-cell resolution, optional glyph markers at
//! the data points (so that series stay distinguishable without colour), dashed reference lines
//! labelled in the axis margin, and a vertical cursor. Plus the number formatting shared by
//! the views.

use super::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::widgets::Widget;

/// One axis: range, tick positions with labels, and a title (x axis only).
#[derive(Debug, Clone, Default)]
pub struct Axis {
    pub min: f64,
    pub max: f64,
    pub ticks: Vec<(f64, String)>,
    pub title: String,
}

/// A data series. Non-finite points break the line.
#[derive(Debug, Clone)]
pub struct Series {
    pub points: Vec<(f64, f64)>,
    pub style: Style,
    /// Drawn at every data point, over the line (monochrome terminals).
    pub glyph: Option<char>,
    /// Connect consecutive points. Without a line, a series with a glyph is a scatter drawn
    /// behind everything else (pinned runs); without either, Braille dots.
    pub line: bool,
}

/// A horizontal reference line, labelled in the y-axis margin.
#[derive(Debug, Clone)]
pub struct HLine {
    pub y: f64,
    pub label: String,
}

/// A single emphasized point (the selected level).
#[derive(Debug, Clone)]
pub struct Mark {
    pub x: f64,
    pub y: f64,
    pub glyph: char,
    pub style: Style,
}

#[derive(Debug, Clone)]
pub struct Plot {
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub hlines: Vec<HLine>,
    pub cursor: Option<f64>,
    pub marks: Vec<Mark>,
    pub theme: Theme,
}

const BRAILLE_BITS: [[u8; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];

impl Plot {
    pub fn new(x: Axis, y: Axis, theme: Theme) -> Plot {
        Plot {
            x,
            y,
            series: Vec::new(),
            hlines: Vec::new(),
            cursor: None,
            marks: Vec::new(),
            theme,
        }
    }
}

/// Sub-cell canvas of the plot area.
struct Canvas {
    w: usize,
    h: usize,
    bits: Vec<u8>,
    style: Vec<Style>,
    glyph: Vec<Option<(char, Style)>>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Canvas {
        Canvas {
            w,
            h,
            bits: vec![0; w * h],
            style: vec![Style::default(); w * h],
            glyph: vec![None; w * h],
        }
    }

    fn dot(&mut self, sx: i64, sy: i64, style: Style) {
        if sx < 0 || sy < 0 || sx >= 2 * self.w as i64 || sy >= 4 * self.h as i64 {
            return;
        }
        let (cx, cy) = (sx as usize / 2, sy as usize / 4);
        let i = cy * self.w + cx;
        self.bits[i] |= BRAILLE_BITS[sx as usize % 2][sy as usize % 4];
        self.style[i] = style;
    }

    /// Bresenham between two sub-cell points (already clipped).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), style: Style) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (stx, sty) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            self.dot(x, y, style);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += stx;
            }
            if e2 <= dx {
                err += dx;
                y += sty;
            }
        }
    }
}

/// Clip the segment p–q to the box [0, xm] × [0, ym] (Liang–Barsky).
fn clip(p: (f64, f64), q: (f64, f64), xm: f64, ym: f64) -> Option<((f64, f64), (f64, f64))> {
    let (dx, dy) = (q.0 - p.0, q.1 - p.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (pk, qk) in [(-dx, p.0), (dx, xm - p.0), (-dy, p.1), (dy, ym - p.1)] {
        if pk == 0.0 {
            if qk < 0.0 {
                return None;
            }
        } else {
            let r = qk / pk;
            if pk < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    (t0 <= t1).then_some((
        (p.0 + t0 * dx, p.1 + t0 * dy),
        (p.0 + t1 * dx, p.1 + t1 * dy),
    ))
}

impl Widget for Plot {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width < 12 || area.height < 4 {
            return;
        }
        let guide = self.theme.guide();
        let axis_row = area.height >= 7;
        let bottom = if axis_row { 2 } else { 1 };
        let h = (area.height - bottom) as usize;

        // y labels: ticks, then reference lines (which win on a shared row)
        let row_of = |y: f64| -> Option<usize> {
            if !(y.is_finite() && self.y.max > self.y.min) {
                return None;
            }
            let f = (self.y.max - y) / (self.y.max - self.y.min);
            (-1e-9..=1.0 + 1e-9)
                .contains(&f)
                .then(|| ((f * (4 * h - 1) as f64).round() as usize / 4).min(h - 1))
        };
        let mut ylabels: Vec<(usize, String, bool)> = Vec::new();
        for (v, label) in &self.y.ticks {
            if let Some(r) = row_of(*v) {
                ylabels.push((r, label.clone(), false));
            }
        }
        for hl in &self.hlines {
            if let Some(r) = row_of(hl.y) {
                ylabels.retain(|(row, _, _)| *row != r);
                ylabels.push((r, hl.label.clone(), true));
            }
        }
        let margin = ylabels
            .iter()
            .map(|(_, l, _)| l.chars().count())
            .max()
            .unwrap_or(0)
            .min(8) as u16
            + 1;
        if area.width <= margin + 4 {
            return;
        }
        let w = (area.width - margin) as usize;
        let (px, py) = (area.x + margin, area.y);

        let mut canvas = Canvas::new(w, h);
        let (xm, ym) = ((2 * w - 1) as f64, (4 * h - 1) as f64);
        let xspan = self.x.max - self.x.min;
        let yspan = self.y.max - self.y.min;
        let to_sub = |(x, y): (f64, f64)| -> Option<(f64, f64)> {
            let p = ((x - self.x.min) / xspan * xm, (self.y.max - y) / yspan * ym);
            (p.0.is_finite() && p.1.is_finite()).then_some(p)
        };
        let col_of = |x: f64| -> Option<usize> {
            let f = (x - self.x.min) / xspan;
            (x.is_finite() && (-1e-9..=1.0 + 1e-9).contains(&f))
                .then(|| ((f * xm).round() as usize / 2).min(w - 1))
        };
        if xspan > 0.0 && yspan > 0.0 {
            for s in &self.series {
                if !s.line && s.glyph.is_some() {
                    continue; // a glyph scatter: drawn behind, below
                }
                let mut prev: Option<(f64, f64)> = None;
                for &pt in &s.points {
                    let cur = to_sub(pt);
                    match (prev, cur) {
                        (Some(p), Some(q)) if s.line => {
                            if let Some((a, b)) = clip(p, q, xm, ym) {
                                let r = |v: (f64, f64)| (v.0.round() as i64, v.1.round() as i64);
                                canvas.line(r(a), r(b), s.style);
                            }
                        }
                        (_, Some(q)) if (0.0..=xm).contains(&q.0) && (0.0..=ym).contains(&q.1) => {
                            canvas.dot(q.0.round() as i64, q.1.round() as i64, s.style);
                        }
                        _ => {}
                    }
                    prev = cur;
                }
            }
            for s in &self.series {
                let Some(g) = s.glyph else { continue };
                for &pt in &s.points {
                    if let Some(q) = to_sub(pt)
                        && (0.0..=xm).contains(&q.0)
                        && (0.0..=ym).contains(&q.1)
                    {
                        let i = (q.1.round() as usize / 4) * w + q.0.round() as usize / 2;
                        // scatters (pinned runs) stay behind lines and other glyphs
                        if s.line || (canvas.bits[i] == 0 && canvas.glyph[i].is_none()) {
                            canvas.glyph[i] = Some((g, s.style));
                        }
                    }
                }
            }
        }

        // plot cells
        let hline_rows: Vec<usize> = self.hlines.iter().filter_map(|l| row_of(l.y)).collect();
        let cursor_col = self.cursor.and_then(col_of);
        for cy in 0..h {
            for cx in 0..w {
                let i = cy * w + cx;
                let cell = &mut buf[(px + cx as u16, py + cy as u16)];
                if let Some((g, style)) = canvas.glyph[i] {
                    cell.set_char(g).set_style(style);
                } else if canvas.bits[i] != 0 {
                    let ch = char::from_u32(0x2800 + canvas.bits[i] as u32).unwrap_or(' ');
                    cell.set_char(ch).set_style(canvas.style[i]);
                } else if cursor_col == Some(cx) {
                    cell.set_char('│').set_style(guide);
                } else if hline_rows.contains(&cy) && cx % 2 == 0 {
                    cell.set_char('╌').set_style(guide);
                }
            }
        }
        for m in &self.marks {
            if let (Some(cx), Some(cy)) = (col_of(m.x), row_of(m.y)) {
                buf[(px + cx as u16, py + cy as u16)]
                    .set_char(m.glyph)
                    .set_style(m.style);
            }
        }

        // y axis
        let ax = px - 1;
        for cy in 0..h {
            buf[(ax, py + cy as u16)].set_char('│').set_style(guide);
        }
        for (r, label, is_ref) in &ylabels {
            buf[(ax, py + *r as u16)].set_char('┤').set_style(guide);
            let label: String = label.chars().take(margin as usize - 1).collect();
            let lx = ax - label.chars().count() as u16;
            let style = if *is_ref { guide } else { self.theme.text() };
            buf.set_string(lx, py + *r as u16, &label, style);
        }

        // x axis
        let mut label_y = py + h as u16;
        if axis_row {
            buf[(ax, label_y)].set_char('└').set_style(guide);
            for cx in 0..w {
                buf[(px + cx as u16, label_y)]
                    .set_char('─')
                    .set_style(guide);
            }
            for (v, _) in &self.x.ticks {
                if let Some(c) = col_of(*v) {
                    buf[(px + c as u16, label_y)].set_char('┬').set_style(guide);
                }
            }
            label_y += 1;
        }
        let title_len = self.x.title.chars().count();
        let right_end = area.x + area.width;
        let title_x = right_end.saturating_sub(title_len as u16);
        let mut next_free = area.x;
        for (v, label) in &self.x.ticks {
            let Some(c) = col_of(*v) else { continue };
            let len = label.chars().count() as u16;
            let start = (px + c as u16).saturating_sub(len / 2).max(area.x);
            let end = start + len;
            if start < next_free || end > right_end || (title_len > 0 && end + 1 > title_x) {
                continue;
            }
            buf.set_string(start, label_y, label, self.theme.text());
            next_free = end + 1;
        }
        if title_len > 0 && title_x >= next_free {
            buf.set_string(title_x, label_y, &self.x.title, guide);
        }
    }
}

/// About `max_count` round ticks covering [min, max] (steps 1, 2, 5 × 10^k).
pub fn linear_ticks(min: f64, max: f64, max_count: usize) -> Vec<f64> {
    if !(min.is_finite() && max.is_finite() && max > min) || max_count == 0 {
        return Vec::new();
    }
    let raw = (max - min) / max_count.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| (max - min) / s <= max_count as f64)
        .unwrap_or(10.0 * mag);
    let first = (min / step).ceil() as i64;
    let last = (max / step).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            if v.abs() < step * 1e-9 { 0.0 } else { v }
        })
        .collect()
}

/// Integer ticks (decades, shells) with a step chosen so that at most `max_count` fit.
pub fn integer_ticks(min: f64, max: f64, max_count: usize) -> Vec<f64> {
    if !(min.is_finite() && max.is_finite() && max >= min) || max_count == 0 {
        return Vec::new();
    }
    let span = (max - min).max(1.0);
    let step = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        .into_iter()
        .find(|s| span / s < max_count as f64)
        .unwrap_or(200.0);
    let first = (min / step).ceil() as i64;
    let last = (max / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Values this small (relative to one) are rounding noise for display purposes.
pub const NOISE: f64 = 1e-8;

/// [`fmt_g`], but rounding noise (|x| < [`NOISE`]) shows as `≈0`, so that tables do not
/// depend on the last bits of a floating-point sum.
pub fn fmt_val(x: f64, sig: usize) -> String {
    if x != 0.0 && x.abs() < NOISE {
        "≈0".into()
    } else {
        fmt_g(x, sig)
    }
}

/// A padded range containing every finite value and every `include`d value.
pub fn value_range(values: impl IntoIterator<Item = f64>, include: &[f64]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().chain(include.iter().copied()) {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if !lo.is_finite() {
        return (-1.0, 1.0);
    }
    // a flat series (or rounding noise around a constant) gets a fixed span, so that noise
    // is not magnified into wiggles that differ from machine to machine
    if hi - lo < NOISE * (1.0 + hi.abs().max(lo.abs())) {
        let mid = 0.5 * (lo + hi);
        let d = if mid.abs() < NOISE {
            1.0
        } else {
            0.1 * mid.abs()
        };
        return (mid - d, mid + d);
    }
    let pad = 0.06 * (hi - lo);
    (lo - pad, hi + pad)
}

/// An axis whose ticks are labelled with [`fmt_g`].
pub fn linear_axis(min: f64, max: f64, max_ticks: usize) -> Axis {
    let ticks = linear_ticks(min, max, max_ticks);
    let step = if ticks.len() > 1 {
        ticks[1] - ticks[0]
    } else {
        0.0
    };
    Axis {
        min,
        max,
        ticks: ticks.into_iter().map(|v| (v, fmt_tick(v, step))).collect(),
        title: String::new(),
    }
}

/// A tick label: as many decimals as the step needs, scientific for tiny or huge values.
fn fmt_tick(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return fmt_sci(v, 0);
    }
    let decimals = if step > 0.0 {
        (-step.log10().floor()).max(0.0) as usize
    } else {
        2
    };
    format!("{v:.decimals$}")
}

/// Like C's `%.{sig}g`: `sig` significant digits, scientific outside [1e-3, 1e5).
pub fn fmt_g(x: f64, sig: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if !x.is_finite() {
        return format!("{x}");
    }
    let exp = x.abs().log10().floor() as i32;
    if !(-3..5).contains(&exp) {
        return fmt_sci(x, sig.saturating_sub(1));
    }
    let decimals = (sig as i32 - 1 - exp).max(0) as usize;
    let s = format!("{x:.decimals$}");
    trim_zeros(&s)
}

/// `1.23e-5` with `decimals` digits after the point (trailing zeros removed).
pub fn fmt_sci(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => format!("{}e{exp}", trim_zeros(mantissa)),
        None => s,
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// A parameter value, exactly (shortest round-trip form), with an exponent when that is shorter.
pub fn fmt_exact(x: f64) -> String {
    let plain = format!("{x}");
    let sci = format!("{x:e}");
    if sci.len() + 2 < plain.len() {
        sci
    } else {
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(fmt_g(std::f64::consts::LN_2, 4), "0.6931");
        assert_eq!(fmt_g(1.0, 4), "1");
        assert_eq!(fmt_g(-2.75e-6, 3), "-2.75e-6");
        assert_eq!(fmt_g(12345.0, 3), "12345");
        assert_eq!(fmt_g(123456.0, 3), "1.23e5");
        assert_eq!(fmt_sci(2.0e-9, 2), "2e-9");
        assert_eq!(fmt_exact(1e-9), "1e-9");
        assert_eq!(fmt_exact(0.005), "0.005");
        assert_eq!(fmt_exact(1e-5), "1e-5");
        assert_eq!(fmt_exact(300.0), "300");
        assert_eq!(fmt_exact(-0.05), "-0.05");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(linear_ticks(0.0, 1.4, 4), vec![0.0, 0.5, 1.0]);
        assert_eq!(
            integer_ticks(-9.0, 0.0, 6),
            vec![-8.0, -6.0, -4.0, -2.0, 0.0]
        );
        assert_eq!(
            integer_ticks(0.0, 47.0, 8),
            vec![0.0, 10.0, 20.0, 30.0, 40.0]
        );
    }

    #[test]
    fn clipping_keeps_inside_segments_and_cuts_long_ones() {
        assert_eq!(
            clip((1.0, 1.0), (2.0, 2.0), 10.0, 10.0),
            Some(((1.0, 1.0), (2.0, 2.0)))
        );
        let ((_, _), (x, y)) = clip((0.0, 5.0), (1e12, 5.0), 10.0, 10.0).unwrap();
        assert_eq!((x, y), (10.0, 5.0));
        assert_eq!(clip((-5.0, -5.0), (-1.0, -1.0), 10.0, 10.0), None);
    }

    #[test]
    fn plot_draws_lines_glyphs_and_labels() {
        let theme = Theme { mono: true };
        let mut plot = Plot::new(
            Axis {
                min: 0.0,
                max: 10.0,
                ticks: vec![(0.0, "0".into()), (10.0, "10".into())],
                title: "N".into(),
            },
            linear_axis(0.0, 1.0, 2),
            theme,
        );
        plot.series.push(Series {
            points: vec![(0.0, 0.0), (10.0, 1.0)],
            style: Style::default(),
            glyph: Some('o'),
            line: true,
        });
        plot.hlines.push(HLine {
            y: 0.5,
            label: "ln2".into(),
        });
        let area = Rect::new(0, 0, 24, 8);
        let mut buf = Buffer::empty(area);
        plot.render(area, &mut buf);
        let text: Vec<String> = (0..8)
            .map(|y| (0..24).map(|x| buf[(x, y)].symbol().to_string()).collect())
            .collect();
        assert!(text[0].starts_with("1.0┤"), "{text:#?}");
        assert!(text.iter().any(|l| l.starts_with("ln2┤")), "{text:#?}");
        assert!(text[5].starts_with("  0┤o"), "{text:#?}");
        assert!(text[6].starts_with("   └┬"), "{text:#?}");
        assert!(text[7].trim_end().ends_with('N'), "{text:#?}");
        assert!(
            text.iter()
                .any(|l| l.contains('⠁') || l.contains('⠊') || l.contains('⡠'))
        );
    }
}
