//! The timeline as an SVG chart: completions per second and errors per
//! second over time, with a vertical line at every restart marker.

use plotters::prelude::*;

use crate::record::Samples;

/// Renders the chart of `samples` as SVG text.
///
/// # Errors
///
/// A drawing error from plotters, as text.
pub fn svg(samples: &Samples, title: &str) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let per_sec = 1.0 / samples.interval.as_secs_f64();
        let width = samples.interval.as_secs_f64();
        let points = |f: &dyn Fn(&crate::record::Bucket) -> u64| -> Vec<(f64, f64)> {
            samples
                .timeline
                .iter()
                .enumerate()
                .map(|(i, b)| (i as f64 * width, f(b) as f64 * per_sec))
                .collect()
        };
        let ok = points(&|b| b.ok);
        let errors = points(&|b| b.errors);
        let end = (samples.timeline.len() as f64 * width).max(width);
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
            .build_cartesian_2d(0.0..end, 0.0..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("per second")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for marker in &samples.markers {
            let x = marker.as_secs_f64();
            chart
                .draw_series(LineSeries::new([(x, 0.0), (x, top)], BLACK.mix(0.25)))
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(LineSeries::new(ok, BLUE.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label("completed")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
        chart
            .draw_series(LineSeries::new(errors, RED.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label("errors")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}
