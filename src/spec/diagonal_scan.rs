//! Shapes of the diagonal complex LTI scan (S4D / S5): u, y (Bt, H, L); lambda, b, c (H, N, 2),
//! complex as interleaved `[re, im]`; dt, d (H). H and N are read from lambda, Bt and L from u.
//! Also the parameters on the host in that layout ([`DiagonalSsmHost`]), built from a HiPPO-LegS
//! diagonalisation or an S4D initialisation.

use super::named;
use crate::error::{Error, Result};
use crate::hippo::diagonal::{legs_diagonal, s4d_inv, s4d_lin, DiagonalSsm};
use crate::hippo::C64;

/// Sizes of a diagonal scan: batch, channels, length, complex modes per channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Batch size Bt.
    pub batch: usize,
    /// Channels H.
    pub channels: usize,
    /// Sequence length L.
    pub len: usize,
    /// Complex modes N per channel.
    pub modes: usize,
}

/// Shapes of the per-channel parameters.
#[derive(Clone, Copy, Debug)]
pub struct SsmShapes<'a> {
    /// lambda (H, N, 2).
    pub lambda: &'a [usize],
    /// b (H, N, 2).
    pub b: &'a [usize],
    /// c (H, N, 2).
    pub c: &'a [usize],
    /// dt (H).
    pub dt: &'a [usize],
    /// d (H).
    pub d: &'a [usize],
}

impl SsmShapes<'_> {
    /// (H, N) read from lambda, with b, c, dt and d checked against them.
    pub fn dims(&self) -> Result<(usize, usize)> {
        let shape = self.lambda;
        if shape.len() != 3 || shape[2] != 2 || shape[0] == 0 || shape[1] == 0 {
            return Err(Error::shape("lambda", "(H, N, 2) with H, N ≥ 1", shape));
        }
        let lambda = named("lambda", shape);
        for (name, t) in [("b", self.b), ("c", self.c)] {
            lambda.same_shape(named(name, t), "(H, N, 2)", &["H", "N", "2"])?;
        }
        for (name, t) in [("dt", self.dt), ("d", self.d)] {
            let t = named(name, t).rank(1, format!("(H) = [{}]", shape[0]))?;
            lambda.agree(0, t, 0, "H")?;
        }
        Ok((shape[0], shape[1]))
    }
}

impl Dims {
    /// The sizes of a scan of `u` (Bt, H, L) with parameters of shapes `ssm`; Bt, L ≥ 1.
    pub fn from_shapes(u: &[usize], ssm: &SsmShapes) -> Result<Self> {
        let (h, n) = ssm.dims()?;
        let ut = named("u", u).rank(3, format!("(Bt, H, L) with H = {h} and Bt, L ≥ 1"))?;
        named("lambda", ssm.lambda).agree(0, ut, 1, "H")?;
        if u[0] == 0 || u[2] == 0 {
            return Err(Error::shape(
                "u",
                format!("(Bt, H, L) with H = {h} and Bt, L ≥ 1"),
                u,
            ));
        }
        Ok(Self {
            batch: u[0],
            channels: h,
            len: u[2],
            modes: n,
        })
    }
}

/// The per-channel parameters on the host (f32): `lambda`, `b`, `c` (H, N, 2) interleaved
/// `[re, im]`, `dt`, `d` (H).
#[derive(Clone, Debug, PartialEq)]
pub struct DiagonalSsmHost {
    /// Channels H.
    pub channels: usize,
    /// Complex modes N per channel.
    pub modes: usize,
    /// Λ (H·N·2).
    pub lambda: Vec<f32>,
    /// B̃ (H·N·2).
    pub b: Vec<f32>,
    /// C̃ (H·N·2).
    pub c: Vec<f32>,
    /// Δ (H).
    pub dt: Vec<f32>,
    /// D (H).
    pub d: Vec<f32>,
}

fn push_complex(out: &mut Vec<f32>, v: &[C64]) {
    for z in v {
        out.push(z.re as f32);
        out.push(z.im as f32);
    }
}

impl DiagonalSsmHost {
    /// One [`DiagonalSsm`] per channel (all with the same number of modes), steps and D.
    pub fn from_ssms(ssms: &[DiagonalSsm], dt: &[f64], d: &[f64]) -> Result<Self> {
        let channels = ssms.len();
        let modes = ssms.first().map(|s| s.modes()).unwrap_or(0);
        if channels == 0 || modes == 0 || ssms.iter().any(|s| s.modes() != modes) {
            return Err(Error::invalid(
                "diagonal SSM inputs need at least one channel, all with the same number (≥ 1) of modes",
            ));
        }
        if dt.len() != channels {
            return Err(Error::shape(
                "dt",
                format!("(H) = [{channels}]"),
                &[dt.len()],
            ));
        }
        if d.len() != channels {
            return Err(Error::shape("d", format!("(H) = [{channels}]"), &[d.len()]));
        }
        let mut host = Self {
            channels,
            modes,
            lambda: Vec::new(),
            b: Vec::new(),
            c: Vec::new(),
            dt: dt.iter().map(|&v| v as f32).collect(),
            d: d.iter().map(|&v| v as f32).collect(),
        };
        for s in ssms {
            push_complex(&mut host.lambda, &s.lambda);
            push_complex(&mut host.b, &s.b);
            push_complex(&mut host.c, &s.c);
        }
        Ok(host)
    }

    /// Channels initialised from HiPPO-LegS of real size `n` (normal part, diagonalised:
    /// ⌈n/2⌉ modes), with channel h's output row `c[h]` (length n).
    pub fn legs(n: usize, c: &[Vec<f64>], dt: &[f64], d: &[f64]) -> Result<Self> {
        let ssms = c
            .iter()
            .map(|row| legs_diagonal(n, row))
            .collect::<Result<Vec<_>>>()?;
        Self::from_ssms(&ssms, dt, d)
    }

    /// S4D-Lin (`inverse = false`) or S4D-Inv channels with `B̃ = 1` and output weights `c[h]`
    /// (`modes` complex values each).
    pub fn s4d(inverse: bool, modes: usize, c: &[Vec<C64>], dt: &[f64], d: &[f64]) -> Result<Self> {
        let lambda = if inverse {
            s4d_inv(modes)
        } else {
            s4d_lin(modes)
        };
        let ssms = c
            .iter()
            .map(|row| crate::hippo::diagonal::s4d(lambda.clone(), row.clone()))
            .collect::<Result<Vec<_>>>()?;
        Self::from_ssms(&ssms, dt, d)
    }

    /// Random S4D-Lin channels as a model would start from: C̃ ~ N(0, ½) per part, Δ
    /// log-uniform in [1e-3, 1e-1], D ~ N(0, 1).
    pub fn random(rng: &mut crate::Rng, channels: usize, modes: usize) -> Self {
        let c: Vec<Vec<C64>> = (0..channels)
            .map(|_| {
                (0..modes)
                    .map(|_| C64::new(rng.normal() * 0.5f64.sqrt(), rng.normal() * 0.5f64.sqrt()))
                    .collect()
            })
            .collect();
        let dt: Vec<f64> = (0..channels)
            .map(|_| (rng.range(1e-3f64.ln(), 1e-1f64.ln())).exp())
            .collect();
        let d: Vec<f64> = (0..channels).map(|_| rng.normal()).collect();
        Self::s4d(false, modes, &c, &dt, &d).expect("consistent random sizes")
    }

    /// The sizes of a scan of `batch` sequences of `len` steps with these parameters.
    pub fn dims(&self, batch: usize, len: usize) -> Dims {
        Dims {
            batch,
            channels: self.channels,
            len,
            modes: self.modes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disagreements_name_both_tensors() {
        let ssm = SsmShapes {
            lambda: &[2, 4, 2],
            b: &[2, 3, 2],
            c: &[2, 4, 2],
            dt: &[2],
            d: &[2],
        };
        assert_eq!(
            ssm.dims().unwrap_err().to_string(),
            "tensors `lambda` (2, 4, 2) and `b` (2, 3, 2) disagree on N: 4 vs 3"
        );
        let ssm = SsmShapes {
            b: &[2, 4, 2],
            ..ssm
        };
        assert_eq!(
            Dims::from_shapes(&[1, 3, 5], &ssm).unwrap_err().to_string(),
            "tensors `lambda` (2, 4, 2) and `u` (1, 3, 5) disagree on H: 2 vs 3"
        );
        assert_eq!(Dims::from_shapes(&[1, 2, 5], &ssm).unwrap().len, 5);
    }
}
