//! The timeline as an SVG chart: completions per second and errors per
//! second over time, with a vertical line at every restart marker.

use plotters::prelude::*;

use crate::record::{Bucket, Samples};

/// The colour of restart markers.
const RESTART: RGBColor = RGBColor(230, 120, 0);

/// Renders the chart of `samples` as SVG text.
///
/// # Errors
///
/// A drawing error from plotters, as text.
pub fn svg(samples: &Samples, title: &str) -> Result<String, String> {
    let mut out = String::new();
    draw(samples, title, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn draw(
    samples: &Samples,
    title: &str,
    out: &mut String,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(out, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let width = samples.interval.as_secs_f64();
    let per_sec = 1.0 / width;
    // Only whole buckets: the last one is cut short by the end of the run.
    let whole = ((samples.elapsed.as_secs_f64() / width) as usize).min(samples.timeline.len());
    let series = |f: fn(&Bucket) -> u64| -> Vec<(f64, f64)> {
        samples.timeline[..whole]
            .iter()
            .enumerate()
            .map(|(i, b)| (i as f64 * width, f(b) as f64 * per_sec))
            .collect()
    };
    let ok = series(|b| b.ok);
    let errors = series(|b| b.errors);
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
