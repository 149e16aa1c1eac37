//! # SVG charts for the evaluation report, drawn by hand
//!
//! Two kinds, sized and lettered for a projector (920 x 540, 15-18 px text): a line
//! chart ([`line_chart`]: numeric or categorical x, linear or log y, optional error
//! bars per point, dashed series) and a grouped bar chart ([`bar_chart`]: one group per
//! category, one bar per series, optional error bars). Both have axis titles with
//! units, a grid, and a legend right of the plot. Values that are missing (a failed
//! run) are left out; an empty chart still draws its axes and says "no data".
//!
//! **Left out.** Anything interactive beyond `<title>` tooltips; stacked bars.

use crate::{COLORS, nice_step, tick_label, xml_escape};
use std::fmt::Write as _;

const W: f64 = 920.0;
const H: f64 = 540.0;
const LEFT: f64 = 95.0;
const TOP: f64 = 55.0;
const PW: f64 = 590.0;
const PH: f64 = 380.0;

/// One point: x, y and the ends of its error bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub bar: Option<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct Line {
    pub name: String,
    pub points: Vec<Point>,
    pub dashed: bool,
    /// Index into the palette (the same engine keeps its color across charts).
    pub color: usize,
}

pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// Categorical x: the label of each x position (then points' x are 0, 1, ...).
    pub categories: Option<Vec<String>>,
    pub log_y: bool,
    pub lines: Vec<Line>,
}

fn header(title: &str) -> String {
    crate::svg_open(
        W,
        H,
        15,
        (LEFT + PW / 2.0, 30.0),
        "font-size=\"18\" font-weight=\"bold\"",
        title,
    )
}

fn frame(s: &mut String, x_label: &str, y_label: &str) {
    let _ = writeln!(
        s,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{PW}\" height=\"{PH}\" fill=\"none\" stroke=\"#333\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text transform=\"translate(22 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        LEFT + PW / 2.0,
        TOP + PH + 58.0,
        xml_escape(x_label),
        TOP + PH / 2.0,
        xml_escape(y_label)
    );
}

fn legend(s: &mut String, i: usize, color: &str, dashed: bool, bar: bool, name: &str) {
    let (x, y) = (LEFT + PW + 16.0, TOP + 12.0 + 24.0 * i as f64);
    if bar {
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"22\" height=\"14\" fill=\"{color}\"/>",
            y - 7.0
        );
    } else {
        let dash = if dashed { " stroke-dasharray=\"7 4\"" } else { "" };
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{color}\" stroke-width=\"3\"{dash}/>",
            x + 22.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
        x + 28.0,
        y + 5.0,
        xml_escape(name)
    );
}

/// A y axis: maps values to pixels, draws its grid and labels.
struct YAxis {
    log: bool,
    lo: f64,
    hi: f64,
}

impl YAxis {
    fn new(values: impl Iterator<Item = f64>, log: bool) -> YAxis {
        let vals: Vec<f64> = values.filter(|v| v.is_finite()).collect();
        let max = vals.iter().copied().fold(0.0f64, f64::max);
        if log {
            let min = vals.iter().copied().filter(|v| *v > 0.0).fold(f64::MAX, f64::min);
            let (min, max) = if min == f64::MAX {
                (1.0, 10.0)
            } else {
                (min, max.max(min))
            };
            let lo = min.log10().floor();
            let hi = max.log10().ceil().max(lo + 1.0);
            YAxis { log, lo, hi }
        } else {
            let step = nice_step(max.max(1e-9), 6.0);
            YAxis {
                log,
                lo: 0.0,
                hi: (max / step).ceil().max(1.0) * step,
            }
        }
    }

    fn y(&self, v: f64) -> f64 {
        let t = if self.log {
            (v.max(10f64.powf(self.lo)).log10() - self.lo) / (self.hi - self.lo)
        } else {
            v / self.hi
        };
        TOP + PH - t.clamp(0.0, 1.05) * PH
    }

    fn draw(&self, s: &mut String) {
        let mut ticks = Vec::new();
        if self.log {
            let mut d = self.lo;
            while d <= self.hi + 0.01 {
                for m in [1.0, 2.0, 5.0] {
                    let v = m * 10f64.powf(d);
                    if v.log10() <= self.hi + 1e-9 {
                        ticks.push((v, m == 1.0));
                    }
                }
                d += 1.0;
            }
        } else {
            let step = nice_step(self.hi, 6.0);
            for k in 0..=((self.hi / step).round() as u64) {
                ticks.push((k as f64 * step, true));
            }
        }
        for (v, major) in ticks {
            let py = self.y(v);
            let stroke = if major { "#ccc" } else { "#eee" };
            let _ = writeln!(
                s,
                "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"{stroke}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT + PW,
                LEFT - 8.0,
                py + 5.0,
                tick_label(v)
            );
        }
    }
}

fn no_data(s: &mut String) {
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#999\" font-size=\"20\">no data</text>",
        LEFT + PW / 2.0,
        TOP + PH / 2.0
    );
}

fn error_bar(s: &mut String, px: f64, lo: f64, hi: f64, color: &str) {
    let _ = writeln!(
        s,
        "<line x1=\"{px:.1}\" y1=\"{lo:.1}\" x2=\"{px:.1}\" y2=\"{hi:.1}\" stroke=\"{color}\" stroke-width=\"1.5\"/>\
         <line x1=\"{:.1}\" y1=\"{lo:.1}\" x2=\"{:.1}\" y2=\"{lo:.1}\" stroke=\"{color}\" stroke-width=\"1.5\"/>\
         <line x1=\"{:.1}\" y1=\"{hi:.1}\" x2=\"{:.1}\" y2=\"{hi:.1}\" stroke=\"{color}\" stroke-width=\"1.5\"/>",
        px - 5.0,
        px + 5.0,
        px - 5.0,
        px + 5.0
    );
}

pub fn line_chart(c: &LineChart) -> String {
    let mut s = header(c.title);
    let all = || c.lines.iter().flat_map(|l| l.points.iter());
    let y = YAxis::new(
        all().flat_map(|p| {
            [Some(p.y), p.bar.map(|b| b.0), p.bar.map(|b| b.1)]
                .into_iter()
                .flatten()
        }),
        c.log_y,
    );
    y.draw(&mut s);
    // x: categories spread evenly with a margin, or a linear axis over the values.
    let (x_lo, x_hi) = match &c.categories {
        Some(cats) => (-0.5, cats.len().max(1) as f64 - 0.5),
        None => {
            let lo = all().map(|p| p.x).fold(f64::MAX, f64::min);
            let hi = all().map(|p| p.x).fold(f64::MIN, f64::max);
            if lo > hi {
                (0.0, 1.0)
            } else {
                (lo - (hi - lo).max(1.0) * 0.05, hi + (hi - lo).max(1.0) * 0.05)
            }
        }
    };
    let px = |x: f64| LEFT + (x - x_lo) / (x_hi - x_lo) * PW;
    let x_ticks: Vec<(f64, String)> = match &c.categories {
        Some(cats) => cats.iter().enumerate().map(|(i, l)| (i as f64, l.clone())).collect(),
        None => {
            let mut xs: Vec<f64> = all().map(|p| p.x).collect();
            xs.sort_by(f64::total_cmp);
            xs.dedup();
            xs.into_iter().map(|x| (x, tick_label(x))).collect()
        }
    };
    for (x, label) in &x_ticks {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#eee\"/>\
             <text x=\"{0:.1}\" y=\"{2:.1}\" text-anchor=\"middle\">{3}</text>",
            px(*x),
            TOP + PH,
            TOP + PH + 22.0,
            xml_escape(label)
        );
    }
    frame(&mut s, c.x_label, c.y_label);
    if all().next().is_none() {
        no_data(&mut s);
    }
    for (i, line) in c.lines.iter().enumerate() {
        let color = COLORS[line.color % COLORS.len()];
        let pts: Vec<String> = line
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", px(p.x), y.y(p.y)))
            .collect();
        let dash = if line.dashed { " stroke-dasharray=\"7 4\"" } else { "" };
        let _ = writeln!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2.5\"{dash}/>",
            pts.join(" ")
        );
        for p in &line.points {
            if let Some((lo, hi)) = p.bar {
                error_bar(&mut s, px(p.x), y.y(lo), y.y(hi), color);
            }
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4.5\" fill=\"{color}\"><title>{}: {}</title></circle>",
                px(p.x),
                y.y(p.y),
                xml_escape(&line.name),
                tick_label(p.y)
            );
        }
        let name = if line.points.is_empty() {
            format!("{} (no data)", line.name)
        } else {
            line.name.clone()
        };
        legend(&mut s, i, color, line.dashed, false, &name);
    }
    s.push_str("</svg>\n");
    s
}

/// One series of bars: a value (and error bar) per group, `None` where it is missing.
#[derive(Clone, Debug)]
pub struct Bars {
    pub name: String,
    pub values: Vec<Option<Point>>,
    pub color: usize,
}

pub struct BarChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub groups: Vec<String>,
    pub series: Vec<Bars>,
}

pub fn bar_chart(c: &BarChart) -> String {
    let mut s = header(c.title);
    let vals = || c.series.iter().flat_map(|b| b.values.iter().flatten());
    let y = YAxis::new(vals().flat_map(|p| [p.y, p.bar.map_or(0.0, |b| b.1)]), false);
    y.draw(&mut s);
    let n = c.groups.len().max(1) as f64;
    let group_w = PW / n;
    let bar_w = group_w * 0.8 / c.series.len().max(1) as f64;
    for (g, label) in c.groups.iter().enumerate() {
        // Long labels wrap at a space onto two lines.
        let cx = LEFT + group_w * (g as f64 + 0.5);
        let (a, b) = match label.split_once(" / ") {
            Some((a, b)) => (a.to_string(), b.to_string()),
            None => (label.clone(), String::new()),
        };
        let _ = writeln!(
            s,
            "<text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\">{}</text>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\">{}</text>",
            TOP + PH + 18.0,
            xml_escape(&a),
            TOP + PH + 33.0,
            xml_escape(&b)
        );
    }
    frame(&mut s, c.x_label, c.y_label);
    if vals().next().is_none() {
        no_data(&mut s);
    }
    for (i, series) in c.series.iter().enumerate() {
        let color = COLORS[series.color % COLORS.len()];
        for (g, v) in series.values.iter().enumerate() {
            let Some(p) = v else { continue };
            let x = LEFT + group_w * g as f64 + group_w * 0.1 + bar_w * i as f64;
            let top = y.y(p.y);
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\">\
                 <title>{} / {}: {}</title></rect>",
                bar_w * 0.92,
                (TOP + PH - top).max(0.0),
                xml_escape(&series.name),
                xml_escape(&c.groups[g.min(c.groups.len() - 1)]),
                tick_label(p.y)
            );
            if let Some((lo, hi)) = p.bar {
                error_bar(&mut s, x + bar_w * 0.46, y.y(lo), y.y(hi), "#333");
            }
        }
        legend(&mut s, i, color, false, true, &series.name);
    }
    s.push_str("</svg>\n");
    s
}
