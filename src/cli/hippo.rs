//! `ssm-mla hippo --measure legt --n 4,8,16,32 [--plot hippo.png]`: the HiPPO online
//! function-approximation demo (DESIGN §3.1). A smooth signal is fed through the ZOH-discretised
//! memory of each N; the history is reconstructed from the final state with the measure's basis
//! and compared with the signal. Prints the max and RMS error per N; `--plot` writes a PNG of the
//! signal (black) and each reconstruction (colours listed on stdout). The plot has no text: the
//! bitmap backend is used without font support, so no system libraries are needed.

use ssm_mla::hippo::{
    discretise, legs_online, reconstruct, simulate, transition, Discretisation, Measure,
};
use ssm_mla::{Error, Result};
use std::f64::consts::PI;
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
    /// Write a PNG plot of the signal and the reconstructions here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// Largest N the demo accepts (dense f64 matrices, thousands of steps).
const MAX_N: usize = 128;

/// The reconstructed stretch: times (oldest first) and the signal there.
struct Demo {
    times: Vec<f64>,
    signal: Vec<f64>,
}

fn base(t: f64) -> f64 {
    (2.0 * PI * 0.9 * t).sin() + 0.6 * (2.0 * PI * 1.7 * t + 0.4).cos() + 0.3 * (5.1 * t).sin()
}

/// The signal each measure is shown on, how long it is fed, and the lag range reconstructed.
fn setup(measure: Measure) -> (fn(f64) -> f64, f64, f64, usize) {
    match measure {
        // (signal, time fed, lags shown, steps per unit time)
        Measure::LegT => (
            |t| base(t) + 0.5 * (2.0 * PI * 3.3 * t + 0.2).sin(),
            3.0,
            1.0,
            4000,
        ),
        Measure::FouT => (
            |t| (1.5 * (2.0 * PI * t).cos()).exp() + 0.3 * (2.0 * PI * t).sin() - 1.5,
            12.0,
            1.0,
            4000,
        ),
        Measure::LagT => (|t| base(t) * (1.0 - (-t * t).exp()), 3.0, 1.0, 1000),
        Measure::LegS => (|x| base(1.6 * x), 1.0, 1.0, 1000),
    }
}

fn reconstruction(measure: Measure, n: usize) -> Result<(Demo, Vec<f64>)> {
    let (f, t_end, shown, per_unit) = setup(measure);
    let steps = (t_end * per_unit as f64).round() as usize;
    let dt = t_end / steps as f64;
    let u: Vec<f64> = (0..steps).map(|k| f((k as f64 + 0.5) * dt)).collect();
    let state = if measure == Measure::LegS {
        legs_online(n, &u, Discretisation::Zoh)?
    } else {
        let (a, b) = transition(measure, n)?;
        let (ad, bd) = discretise(&a, &b, dt, Discretisation::Zoh)?;
        simulate(&ad, &bd, &u)
            .pop()
            .ok_or_else(|| Error::invalid("empty signal"))?
    };
    let points = 400;
    // Oldest first: lag `shown` down to 0 (LegS: lags are fractions of the history).
    let lags: Vec<f64> = (0..=points)
        .map(|i| shown * (points - i) as f64 / points as f64)
        .collect();
    let times: Vec<f64> = lags.iter().map(|&s| t_end - s).collect();
    let signal = times.iter().map(|&t| f(t)).collect();
    Ok((Demo { times, signal }, reconstruct(measure, &state, &lags)))
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
    for (i, &n) in args.n.iter().enumerate() {
        let (d, rec) = reconstruction(measure, n)?;
        let errors: Vec<f64> = rec.iter().zip(&d.signal).map(|(r, s)| r - s).collect();
        let max = errors.iter().fold(0.0f64, |m, e| m.max(e.abs()));
        let rms = (errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64).sqrt();
        let (name, _) = COLOURS[i % COLOURS.len()];
        println!("{n:>6} {max:>12.3e} {rms:>12.3e}  {name}");
        curves.push(rec);
        demo = Some(d);
    }
    if let (Some(path), Some(demo)) = (&args.plot, &demo) {
        plot(path, demo, &curves)?;
        println!("wrote {} (signal in black)", path.display());
    }
    Ok(0)
}

const COLOURS: [(&str, (u8, u8, u8)); 6] = [
    ("red", (220, 40, 40)),
    ("blue", (40, 80, 220)),
    ("green", (30, 160, 60)),
    ("orange", (240, 150, 20)),
    ("purple", (150, 50, 180)),
    ("cyan", (20, 170, 190)),
];

fn plot(path: &Path, demo: &Demo, curves: &[Vec<f64>]) -> Result<()> {
    use plotters::prelude::*;
    let (w, h) = (900u32, 500u32);
    let mut pixels = vec![255u8; (w * h * 3) as usize];
    let draw_error = |e: &dyn std::fmt::Display| Error::invalid(format!("plotting: {e}"));
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_error(&e))?;
        let x0 = demo.times[0];
        let x1 = *demo.times.last().unwrap_or(&1.0);
        let lo = demo.signal.iter().fold(f64::INFINITY, |m, &v| m.min(v));
        let hi = demo.signal.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        let pad = 0.25 * (hi - lo).max(1e-3);
        let mut chart = ChartBuilder::on(&root)
            .margin(20)
            .build_cartesian_2d(x0..x1, (lo - pad)..(hi + pad))
            .map_err(|e| draw_error(&e))?;
        let grey = RGBColor(200, 200, 200);
        chart
            .draw_series(LineSeries::new([(x0, 0.0), (x1, 0.0)], &grey))
            .map_err(|e| draw_error(&e))?;
        for (i, curve) in curves.iter().enumerate() {
            let (_, (r, g, b)) = COLOURS[i % COLOURS.len()];
            let clipped = curve
                .iter()
                .map(|&v| v.clamp(lo - pad, hi + pad))
                .zip(&demo.times)
                .map(|(v, &t)| (t, v));
            chart
                .draw_series(LineSeries::new(clipped, RGBColor(r, g, b).stroke_width(2)))
                .map_err(|e| draw_error(&e))?;
        }
        let signal = demo.times.iter().copied().zip(demo.signal.iter().copied());
        chart
            .draw_series(LineSeries::new(signal, BLACK.stroke_width(1)))
            .map_err(|e| draw_error(&e))?;
        root.present().map_err(|e| draw_error(&e))?;
    }
    let io_error = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io_error)?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let png_error = |e: png::EncodingError| Error::invalid(format!("writing PNG: {e}"));
    encoder
        .write_header()
        .map_err(png_error)?
        .write_image_data(&pixels)
        .map_err(png_error)?;
    Ok(())
}
