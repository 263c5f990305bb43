//! Validating one SSD scan: every shape, dtype, stride, slot and limit is checked, and the call
//! planned ([`super::plan`]), before anything is recorded.

use super::plan::{chunk_plan, chunks_per_window, Plan};
use super::*;

/// The batched inputs' shapes.
pub(super) fn shapes_of<'a>(i: &'a SsdInputs) -> SsdShapes<'a> {
    SsdShapes {
        x: i.x.shape(),
        dt: i.dt.shape(),
        a: i.a.shape(),
        b: i.b.shape(),
        c: i.c.shape(),
        d: i.d.map(|t| t.shape()),
        z: i.z.map(|t| t.shape()),
        dt_bias: i.dt_bias.map(|t| t.shape()),
        initial_states: i.initial_states.map(|t| t.shape()),
    }
}

/// Error unless writing through `v` touches each element at most once: sorted by stride, each
/// dimension's stride must pass the furthest element the smaller ones reach.
fn expect_disjoint(v: &View, name: &str) -> Result<()> {
    let mut dims: Vec<(usize, usize)> = v
        .shape()
        .iter()
        .zip(v.strides())
        .filter(|(&n, _)| n > 1)
        .map(|(&n, &s)| (s, n))
        .collect();
    dims.sort();
    let mut reach = 0;
    for (s, n) in dims {
        if s <= reach {
            return Err(Error::invalid(format!(
                "view `{name}` of shape {:?} with strides {:?} would write an element twice",
                v.shape(),
                v.strides()
            )));
        }
        reach += (n - 1) * s;
    }
    Ok(())
}

/// A validated packed call, ready to record.
pub(super) struct Prepared<'a> {
    pub(super) dims: SsdDims,
    pub(super) d_layout: Option<DLayout>,
    pub(super) inputs: SsdPackedInputs<'a>,
    pub(super) out: &'a View,
    pub(super) pool: &'a Tensor,
    pub(super) plan: Plan,
}

impl SsdScan {
    /// Validate a packed call (everything but NaN) and plan it; nothing is recorded.
    pub(super) fn prepare<'a>(
        &self,
        gpu: &Gpu,
        inputs: &SsdPackedInputs<'a>,
        out: &'a View,
        pool: &'a Tensor,
        fresh_start: bool,
    ) -> Result<Prepared<'a>> {
        let (dims, d_layout) = SsdDims::from_packed_shapes(&SsdShapes {
            x: inputs.x.shape(),
            dt: inputs.dt.shape(),
            a: inputs.a.shape(),
            b: inputs.b.shape(),
            c: inputs.c.shape(),
            d: inputs.d.map(|t| t.shape()),
            z: inputs.z.map(|v| v.shape()),
            dt_bias: inputs.dt_bias.map(|t| t.shape()),
            initial_states: None,
        })?;
        let SsdDims {
            len: t,
            heads: h,
            head_dim: p,
            n,
            ..
        } = dims;
        for (name, v) in [
            ("x", Some(inputs.x)),
            ("dt", Some(inputs.dt)),
            ("B", Some(inputs.b)),
            ("C", Some(inputs.c)),
            ("z", inputs.z),
        ] {
            if let Some(v) = v {
                v.tensor().expect_dtype(name, DType::F32)?;
            }
        }
        for (name, tensor) in [
            ("A", Some(inputs.a)),
            ("D", inputs.d),
            ("dt_bias", inputs.dt_bias),
        ] {
            if let Some(tensor) = tensor {
                tensor.expect_dtype(name, DType::F32)?;
            }
        }
        if n > MAX_N {
            return Err(Error::shape(
                "B",
                format!("(T, G, N) with N ≤ {MAX_N} (the GPU kernels' limit)"),
                inputs.b.shape(),
            ));
        }
        if p > MAX_P {
            return Err(Error::shape(
                "x",
                format!("(T, H, P) with P ≤ {MAX_P} (the GPU kernels' limit)"),
                inputs.x.shape(),
            ));
        }
        check_chunk_size(inputs.chunk_size)?;
        let (lo, hi) = inputs.dt_limit;
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err(Error::invalid(format!(
                "dt_limit must be a range lo ≤ hi, got ({lo}, {hi})"
            )));
        }
        out.expect("out", "(T, H, P)", &[t, h, p], DType::F32)?;
        let [rows, ..] = pool.shape()[..] else {
            return Err(Error::shape("state_pool", "(Pool, H, P, N)", pool.shape()));
        };
        pool.expect(
            "state_pool",
            "(Pool, H, P, N)",
            &[rows, h, p, n],
            DType::F32,
        )?;
        let s = inputs.slots.len();
        crate::spec::ssd_scan::check_cu_seqlens(inputs.cu_seqlens, s, t)?;
        let mut seen = vec![false; rows];
        for &slot in inputs.slots {
            let slot = slot as usize;
            if slot >= rows || std::mem::replace(&mut seen[slot], true) {
                return Err(Error::invalid(format!(
                    "slots {:?} must be distinct rows of the state pool (Pool = {rows})",
                    inputs.slots
                )));
            }
        }
        expect_disjoint(out, "out")?;
        let reads = [
            ("x", Some(inputs.x.tensor())),
            ("dt", Some(inputs.dt.tensor())),
            ("B", Some(inputs.b.tensor())),
            ("C", Some(inputs.c.tensor())),
            ("z", inputs.z.map(|v| v.tensor())),
            ("A", Some(inputs.a)),
            ("D", inputs.d),
            ("dt_bias", inputs.dt_bias),
        ];
        for (written, buf) in [("out", out.tensor()), ("state_pool", pool)] {
            for (name, r) in reads {
                if r.is_some_and(|r| r.buffer() == buf.buffer()) {
                    return Err(Error::invalid(format!(
                        "`{written}` shares its buffer with `{name}`: the scan cannot write where \
                         it reads"
                    )));
                }
            }
        }
        if out.tensor().buffer() == pool.buffer() {
            return Err(Error::invalid(
                "`out` and `state_pool` share one buffer: they must be distinct tensors",
            ));
        }
        for (name, tensor) in [("state_pool", pool)] {
            if tensor.size_bytes() > gpu.max_binding_bytes() {
                return Err(limit(
                    format!("`{name}` of shape {:?} in the SSD scan", tensor.shape()),
                    format!(
                        "max_storage_buffer_binding_size = {}",
                        gpu.max_binding_bytes()
                    ),
                ));
            }
        }
        if rows * dims.state_len() >= u32::MAX as usize {
            return Err(limit(
                format!("state pool of {} elements", rows * dims.state_len()),
                "the kernels index with 32-bit integers".into(),
            ));
        }
        let mut views = vec![
            ("x", inputs.x),
            ("dt", inputs.dt),
            ("B", inputs.b),
            ("C", inputs.c),
            ("out", out),
        ];
        if let Some(z) = inputs.z {
            views.push(("z", z));
        }
        for (name, v) in &views {
            v.index_u32(name)?;
        }
        let q = inputs.chunk_size;
        let per_window = chunks_per_window(gpu, &dims, q, &views)?;
        let plan = chunk_plan(inputs.cu_seqlens, inputs.slots, q, fresh_start, per_window);
        Ok(Prepared {
            dims,
            d_layout,
            inputs: *inputs,
            out,
            pool,
            plan,
        })
    }
}
