//! `ssm-mla hippo --measure legt --n 4,8,16,32 [--plot hippo.png]`: the HiPPO online
//! function-approximation demo. A smooth signal is fed through the ZOH-discretised memory of
//! each N; the history is reconstructed from the final state with the measure's basis and
//! compared with the signal. Prints the max and RMS error per N; `--plot` writes a PNG figure of
//! the signal (black) and each reconstruction (colours listed on stdout) with a title, labelled
//! axes with units and ticks, and a legend naming each curve's N and its max error. Text is drawn
//! with a font embedded in the binary (DejaVu Sans), so no system fonts or font libraries are
//! needed; the PNG is written to a temporary file and renamed into place.

use ssm_mla::hippo::demo::{reconstruction, Demo, MAX_N};
use ssm_mla::hippo::Measure;
use ssm_mla::{Error, Result};
use std::path::{Path, PathBuf};

/// Arguments of `hippo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// legt, legs, lagt or fout.
    #[arg(long, default_value = "legt")]
    pub measure: String,
    /// State sizes to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32")]
    pub n: Vec<usize>,
    /// Write a PNG figure (1000×600: title, labelled axes, legend) of the signal and the
    /// reconstructions here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// Run the demo; bad arguments are an `Err` (exit code 2).
pub fn run(args: Args) -> Result<i32> {
    let measure: Measure = args.measure.parse()?;
    if args.n.is_empty() || args.n.iter().any(|&n| n == 0 || n > MAX_N) {
        return Err(Error::invalid(format!(
            "--n must list state sizes in 1..={MAX_N}, got {:?}",
            args.n
        )));
    }
    println!(
        "HiPPO-{} memory, ZOH, reconstructing {}",
        measure.name(),
        match measure {
            Measure::LegT => "the last window (θ = 1)",
            Measure::FouT => "the last window (unit period)",
            Measure::LagT =>
                "the last time unit (LagT projects in L² over all lags: slow pointwise convergence)",
            Measure::LegS => "the whole history",
        }
    );
    println!("{:>6} {:>12} {:>12}  colour", "N", "max |err|", "rms err");
    let mut curves = Vec::new();
    let mut demo = None;
    let mut max_errors = Vec::new();
    for (i, &n) in args.n.iter().enumerate() {
        let (d, rec) = reconstruction(measure, n)?;
        let errors: Vec<f64> = rec.iter().zip(&d.signal).map(|(r, s)| r - s).collect();
        let max = errors.iter().fold(0.0f64, |m, e| m.max(e.abs()));
        let rms = (errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64).sqrt();
        let (name, _) = COLOURS[i % COLOURS.len()];
        println!("{n:>6} {max:>12.3e} {rms:>12.3e}  {name}");
        curves.push(rec);
        max_errors.push(max);
        demo = Some(d);
    }
    if let (Some(path), Some(demo)) = (&args.plot, &demo) {
        let figure = Figure {
            title: format!(
                "HiPPO-{} memory (ZOH): online reconstruction of {}",
                display_name(measure),
                match measure {
                    Measure::LegT => "the last window θ = 1",
                    Measure::FouT => "the last unit window",
                    Measure::LagT => "the last time unit",
                    Measure::LegS => "the whole history",
                }
            ),
            labels: args
                .n
                .iter()
                .zip(&max_errors)
                .map(|(n, e)| format!("N = {n} (max |error| {e:.2e})"))
                .collect(),
        };
        plot(path, demo, &curves, &figure)?;
        println!("wrote {} (signal in black)", path.display());
    }
    Ok(0)
}

const COLOURS: [(&str, (u8, u8, u8)); 10] = [
    ("red", (220, 40, 40)),
    ("blue", (40, 80, 220)),
    ("green", (30, 160, 60)),
    ("orange", (240, 150, 20)),
    ("purple", (150, 50, 180)),
    ("cyan", (20, 170, 190)),
    ("brown", (140, 86, 75)),
    ("pink", (227, 119, 194)),
    ("grey", (127, 127, 127)),
    ("olive", (160, 160, 30)),
];

fn display_name(measure: Measure) -> &'static str {
    match measure {
        Measure::LegT => "LegT",
        Measure::LegS => "LegS",
        Measure::LagT => "LagT",
        Measure::FouT => "FouT",
    }
}

/// The text of the figure: its title and one legend entry per reconstruction.
struct Figure {
    title: String,
    labels: Vec<String>,
}

/// Width and height of the figure in pixels.
const PLOT_SIZE: (u32, u32) = (1000, 600);

/// The font family all text is drawn in; registered once from the embedded DejaVu Sans.
const FONT: &str = "sans-serif";

fn register_font() -> Result<()> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(
            FONT,
            plotters::style::FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "plotting: the embedded font could not be loaded",
        ))
    }
}

fn plot(path: &Path, demo: &Demo, curves: &[Vec<f64>], figure: &Figure) -> Result<()> {
    use plotters::prelude::*;
    register_font()?;
    let (w, h) = PLOT_SIZE;
    let mut pixels = vec![255u8; (w * h * 3) as usize];
    let draw_error = |e: &dyn std::fmt::Display| Error::invalid(format!("plotting: {e}"));
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(&e))?;
        let x0 = demo.times[0];
        let x1 = *demo.times.last().unwrap_or(&1.0);
        let lo = demo.signal.iter().fold(f64::INFINITY, |m, &v| m.min(v));
        let hi = demo.signal.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let pad = 0.3 * (hi - lo).max(1e-3);
        let (y0, y1) = (lo - pad, hi + pad);
        let mut chart = ChartBuilder::on(&root)
            .caption(&figure.title, (FONT, 24))
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(75)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| draw_error(&e))?;
        chart
            .configure_mesh()
            .x_desc("time t (s)")
            .y_desc("signal value (arbitrary units)")
            .x_labels(11)
            .y_labels(9)
            .x_label_formatter(&|v| format!("{v:.1}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 18))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| draw_error(&e))?;
        let signal = || demo.times.iter().copied().zip(demo.signal.iter().copied());
        // The signal is listed first in the legend and drawn again last, on top.
        chart
            .draw_series(LineSeries::new(signal(), BLACK.stroke_width(2)))
            .map_err(|e| draw_error(&e))?
            .label("signal f(t)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], BLACK.stroke_width(2)));
        for (i, curve) in curves.iter().enumerate() {
            let (_, (r, g, b)) = COLOURS[i % COLOURS.len()];
            let colour = RGBColor(r, g, b);
            let clipped = curve
                .iter()
                .map(|&v| v.clamp(y0, y1))
                .zip(&demo.times)
                .map(|(v, &t)| (t, v));
            let label = figure.labels.get(i).cloned().unwrap_or_default();
            chart
                .draw_series(LineSeries::new(clipped, colour.stroke_width(2)))
                .map_err(|e| draw_error(&e))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 24, y)], colour.stroke_width(2))
                });
        }
        chart
            .draw_series(LineSeries::new(signal(), BLACK.stroke_width(1)))
            .map_err(|e| draw_error(&e))?;
        let clamped: Vec<Vec<f64>> = curves
            .iter()
            .map(|c| c.iter().map(|&v| v.clamp(y0, y1)).collect())
            .collect();
        let corner = emptiest_corner(
            &demo.times,
            std::iter::once(&demo.signal).chain(&clamped),
            (x0, x1, y0, y1),
            0.4,
            ((curves.len() + 1) as f64 * 0.05 + 0.04).min(0.9),
        );
        chart
            .configure_series_labels()
            .position(match corner {
                0 => SeriesLabelPosition::UpperLeft,
                1 => SeriesLabelPosition::UpperRight,
                2 => SeriesLabelPosition::LowerLeft,
                _ => SeriesLabelPosition::LowerRight,
            })
            .label_font((FONT, 16))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(120, 120, 120))
            .margin(10)
            .draw()
            .map_err(|e| draw_error(&e))?;
        root.present().map_err(|e| draw_error(&e))?;
    }
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let png_error = |e: png::EncodingError| Error::invalid(format!("writing PNG: {e}"));
        encoder
            .write_header()
            .map_err(png_error)?
            .write_image_data(&pixels)
            .map_err(png_error)?;
    }
    write_atomically(path, &bytes)
}

/// Which corner of the plot (0 upper left, 1 upper right, 2 lower left, 3 lower right) holds the
/// fewest curve points in a box of `fw` × `fh` (fractions of the axes), for the legend.
fn emptiest_corner<'a>(
    times: &[f64],
    curves: impl Iterator<Item = &'a Vec<f64>>,
    (x0, x1, y0, y1): (f64, f64, f64, f64),
    fw: f64,
    fh: f64,
) -> usize {
    let mut counts = [0usize; 4];
    for curve in curves {
        for (&t, &v) in times.iter().zip(curve) {
            let fx = (t - x0) / (x1 - x0);
            let fy = (v - y0) / (y1 - y0);
            let left = fx <= fw;
            let right = fx >= 1.0 - fw;
            let top = fy >= 1.0 - fh;
            let bottom = fy <= fh;
            counts[0] += (left && top) as usize;
            counts[1] += (right && top) as usize;
            counts[2] += (left && bottom) as usize;
            counts[3] += (right && bottom) as usize;
        }
    }
    (0..4).min_by_key(|&c| counts[c]).unwrap_or(0)
}

/// Write `bytes` to a temporary file beside `path`, then rename it into place, so a failure
/// never leaves a half-written file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_error = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plot.png".into());
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io_error)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(e)
    })
}
