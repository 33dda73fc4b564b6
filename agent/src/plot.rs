//! The score-over-time plot of `invigil score --plot`: the score, the
//! threshold, the incident spans and, in bands along the bottom, the frames
//! that carry each behaviour reason (talking, gaze_away, hand_at_face,
//! looking_away, …), as SVG or PNG (by the file's extension).
//!
//! Labels need a TrueType font: DejaVu Sans (Debian `fonts-dejavu-core`,
//! installed by scripts/setup) or the file named by `INVIGIL_FONT`.

use std::path::Path;

use plotters::prelude::*;

/// What to draw.
pub struct ScorePlot<'a> {
    pub title: &'a str,
    /// (seconds into the video, score)
    pub points: &'a [(f32, u8)],
    pub threshold: u8,
    /// Incident spans in seconds.
    pub incidents: &'a [(f32, f32)],
    /// Per reason, the spans (seconds) of frames that carry it.
    pub reasons: &'a [(String, Vec<(f32, f32)>)],
}

/// Colours of the reason bands, in turn.
const BAND_COLOURS: [RGBColor; 6] = [
    RGBColor(148, 103, 189),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
];

const FONT_PATHS: [&str; 2] =
    ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"];

fn register_font() -> Result<(), String> {
    use std::sync::OnceLock;
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let path = std::env::var("INVIGIL_FONT")
            .ok()
            .or_else(|| FONT_PATHS.iter().find(|p| Path::new(p).exists()).map(|p| p.to_string()))
            .ok_or("no font for the plot's labels: install fonts-dejavu-core or set INVIGIL_FONT to a .ttf file")?;
        let bytes = std::fs::read(&path).map_err(|e| format!("font {path}: {e}"))?;
        // plotters keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("font {path}: not a TrueType font"))
    })
    .clone()
}

/// Writes the plot to `path` (`.svg` or `.png`).
pub fn write(path: &Path, plot: &ScorePlot<'_>) -> Result<(), String> {
    register_font()?;
    let size = (1200, 400);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    match ext.as_str() {
        "svg" => draw(SVGBackend::new(path, size).into_drawing_area(), plot).map_err(|e| err(&e)),
        "png" => draw(BitMapBackend::new(path, size).into_drawing_area(), plot).map_err(|e| err(&e)),
        _ => Err(format!("plot {}: use a .svg or .png file name", path.display())),
    }
}

fn draw<DB: DrawingBackend>(area: DrawingArea<DB, plotters::coord::Shift>, p: &ScorePlot<'_>) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |x: &dyn std::fmt::Display| x.to_string();
    area.fill(&WHITE).map_err(|x| e(&x))?;
    let end = p.points.last().map(|&(t, _)| t).unwrap_or(1.0).max(1.0);
    let mut chart = ChartBuilder::on(&area)
        .caption(p.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f32..end, 0f32..100f32)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("video time (s)")
        .y_desc("focus score")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|x| e(&x))?;
    let incident = RGBColor(230, 80, 60).mix(0.2);
    chart
        .draw_series(p.incidents.iter().map(|&(a, b)| Rectangle::new([(a, 0.0), (b, 100.0)], incident.filled())))
        .map_err(|x| e(&x))?
        .label("incident")
        .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], incident.filled()));
    // One band 4 points high per reason, from the bottom up.
    for (i, (name, spans)) in p.reasons.iter().enumerate() {
        let colour = BAND_COLOURS[i % BAND_COLOURS.len()];
        let (y0, y1) = (i as f32 * 4.0, i as f32 * 4.0 + 3.0);
        chart
            .draw_series(spans.iter().map(|&(a, b)| Rectangle::new([(a, y0), (b.max(a + 0.02), y1)], colour.filled())))
            .map_err(|x| e(&x))?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 3), (x + 16, y + 3)], colour.filled()));
    }
    let thr = p.threshold as f32;
    chart
        .draw_series(LineSeries::new([(0.0, thr), (end, thr)], RED.stroke_width(1)))
        .map_err(|x| e(&x))?
        .label(format!("threshold {}", p.threshold))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    chart
        .draw_series(LineSeries::new(p.points.iter().map(|&(t, s)| (t, s as f32)), BLUE.stroke_width(2)))
        .map_err(|x| e(&x))?
        .label("score")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|x| e(&x))?;
    area.present().map_err(|x| e(&x))
}
