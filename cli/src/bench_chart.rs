//! `rigwire bench --svg FILE`: the rows as one bar chart, each as its speed
//! relative to the raw baseline of the same run (1.0 is raw; latency rows
//! are inverted so that, for every bar, longer is better).

use std::path::Path;

use plotters::prelude::*;

/// The machine, for the chart's title: its CPU model and how many CPUs
/// this process may run on (1 when pinned with `taskset -c 0`).
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("an unknown CPU", str::trim)
        .to_owned();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{model}, {cpus} CPU(s) usable")
}

/// Draws `bars` (a label and the speed relative to raw), the first on top,
/// into an SVG file.
///
/// # Errors
/// Why the file could not be drawn or written.
pub(crate) fn draw(path: &Path, title: &str, bars: &[(String, f64)]) -> Result<(), String> {
    // The chart counts up from the bottom.
    let bars: Vec<(String, f64)> = bars.iter().rev().cloned().collect();
    let bars = &bars[..];
    let fail = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", path.display());
    let height = 90 + 30 * bars.len() as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let widest = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 1.12;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(300)
        .build_cartesian_2d(0.0..widest, (0..bars.len()).into_segmented())
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("speed relative to raw sockets in the same run (1.0 = raw; longer is better)")
        .draw()
        .map_err(|e| fail(&e))?;
    let colour = |speed: f64| match speed {
        s if s >= 0.87 => RGBColor(46, 139, 87),
        s if s >= 0.5 => RGBColor(230, 145, 30),
        _ => RGBColor(200, 50, 50),
    };
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, speed))| {
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (*speed, SegmentValue::Exact(i + 1)),
                ],
                colour(*speed).filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        }))
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, speed))| {
            Text::new(
                format!("{speed:.2}"),
                (*speed + widest * 0.01, SegmentValue::CenterOf(i)),
                ("sans-serif", 13),
            )
        }))
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![
                (1.0, SegmentValue::Exact(0)),
                (1.0, SegmentValue::Exact(bars.len())),
            ],
            BLACK.stroke_width(1),
        )))
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}
