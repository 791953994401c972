//! The timeline as an SVG chart: completions per second and errors per
//! second over time, with a vertical line at every restart marker.

use plotters::prelude::*;

use crate::record::{Bucket, Samples};

/// The colour of restart markers.
const RESTART: RGBColor = RGBColor(230, 120, 0);

/// The colour of the restart dips.
const DIP: RGBColor = RGBColor(255, 200, 120);

/// Renders the chart of `samples` as SVG text; each restart's dip (time
/// below half of `level_rps`, or of the run's own level) is shaded.
///
/// # Errors
///
/// A drawing error from plotters, as text.
pub fn svg(samples: &Samples, title: &str, level_rps: Option<f64>) -> Result<String, String> {
    let mut out = String::new();
    draw(samples, title, level_rps, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn draw(
    samples: &Samples,
    title: &str,
    level_rps: Option<f64>,
    out: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(out, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let width = samples.interval.as_secs_f64();
    let per_sec = 1.0 / width;
    // Only whole buckets: the last one is cut short by the end of the run.
    let buckets = samples.whole_buckets();
    let whole = buckets.len();
    let series = |f: fn(&Bucket) -> u64| -> Vec<(f64, f64)> {
        buckets
            .iter()
            .enumerate()
            .map(|(i, b)| (i as f64 * width, f(b) as f64 * per_sec))
            .collect()
    };
    let ok = series(Bucket::ok);
    let errors = series(Bucket::errors);
    let end = (whole as f64 * width).max(width);
    let top = ok
        .iter()
        .chain(&errors)
        .map(|(_, y)| *y)
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("per second")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    if let Some(dips) = samples.dips(level_rps) {
        let shades = samples
            .markers
            .iter()
            .zip(&dips.per_restart_ms)
            .filter(|(_, ms)| **ms > 0)
            .map(|(m, ms)| {
                let x = m.as_secs_f64();
                Rectangle::new(
                    [(x, 0.0), (x + *ms as f64 / 1000.0, top)],
                    DIP.mix(0.5).filled(),
                )
            });
        chart
            .draw_series(shades)?
            .label(format!(
                "dip (mean {:.0} ms, max {} ms)",
                dips.mean_ms, dips.max_ms
            ))
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], DIP.filled()));
    }
    let markers: Vec<f64> = samples
        .markers
        .iter()
        .map(|m| m.as_secs_f64())
        .filter(|x| *x <= end)
        .collect();
    for (i, x) in markers.iter().enumerate() {
        let line = chart.draw_series(LineSeries::new(
            [(*x, 0.0), (*x, top)],
            RESTART.stroke_width(1),
        ))?;
        if i == 0 {
            line.label("restart")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RESTART));
        }
    }
    chart
        .draw_series(LineSeries::new(ok, BLUE.stroke_width(2)))?
        .label("completed")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(LineSeries::new(errors, RED.stroke_width(2)))?
        .label("errors")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
