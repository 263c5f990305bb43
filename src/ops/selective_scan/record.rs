//! Recording one selective-scan call: validate, pack A/D/delta_bias into the op's scratch,
//! seed the state, then one dispatch per row window of [`super::plan`].

use super::*;

impl SelectiveScan {
    /// The op's scratch for the packed per-channel parameters, grown to `len` elements.
    pub(super) fn scratch_of(&self, gpu: &Gpu, len: usize) -> Result<Tensor> {
        let mut slot = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(t) if t.len() >= len => Ok(t.clone()),
            _ => {
                let t = gpu.empty(&[len.next_power_of_two()], DType::F32)?;
                *slot = Some(t.clone());
                Ok(t)
            }
        }
    }

    /// Record the scan: `out` (Bt, D, L, u's dtype) and `last_state` (Bt, D, N, f32) are
    /// written. Shapes and dtypes are validated first; on error nothing is recorded.
    pub fn record(
        &self,
        batch: &mut Batch,
        inputs: &SelectiveScanInputs,
        out: &Tensor,
        last_state: &Tensor,
    ) -> Result<()> {
        let dims = inputs.dims()?;
        let ScanDims {
            batch: bt,
            dim,
            len,
            n,
            ..
        } = dims;
        if n > MAX_N {
            return Err(Error::shape(
                "A",
                format!("(D, N) with N ≤ {MAX_N} (the GPU kernel's limit)"),
                inputs.a.shape(),
            ));
        }
        let act = inputs.u.dtype();
        if out.dtype() != act {
            return Err(Error::DType {
                name: "out".into(),
                expected: format!("{act} (u's dtype: u, delta, z and out share one dtype)"),
                got: out.dtype().to_string(),
            });
        }
        out.expect("out", "(Bt, D, L)", &[bt, dim, len], act)?;
        last_state.expect("last_state", "(Bt, D, N)", &[bt, dim, n], DType::F32)?;
        let gpu = batch.gpu();
        let rows = bt * dim;
        let plan = plan::row_windows(gpu, &dims)?;
        let chan_len = plan::packed_len(&dims);

        // Record: parameter packing, initial state, then the dispatches.
        let scratch = self.scratch_of(gpu, chan_len)?;
        let p_d = dim * n;
        let p_bias = p_d + dim;
        batch.copy(inputs.a, 0, &scratch, 0, (dim * n * 4) as u64)?;
        if let Some(d) = inputs.d {
            batch.copy(d, 0, &scratch, (p_d * 4) as u64, (dim * 4) as u64)?;
        }
        if let Some(bias) = inputs.delta_bias {
            batch.copy(bias, 0, &scratch, (p_bias * 4) as u64, (dim * 4) as u64)?;
        }
        if let Some(h) = inputs.initial_state {
            if h.buffer() != last_state.buffer() {
                batch.copy(h, 0, last_state, 0, last_state.size_bytes())?;
            }
        }
        let mut flags = 0;
        for (on, bit) in [
            (dims.b != BcLayout::Constant, B_VARIABLE),
            (dims.c != BcLayout::Constant, C_VARIABLE),
            (inputs.d.is_some(), HAS_D),
            (inputs.z.is_some(), HAS_Z),
            (inputs.delta_bias.is_some(), HAS_BIAS),
            (inputs.delta_softplus, SOFTPLUS),
            (inputs.initial_state.is_some(), HAS_INIT),
        ] {
            if on {
                flags |= bit;
            }
        }
        // Rows per workgroup: the row-sequential kernel runs one invocation per row, the chunked
        // one a workgroup per row.
        // Half activations: the variant of the same body with the storage flags (cached).
        let storage = crate::ops::storage_flags(gpu, "u", act)?;
        // Half activations: B and C each f32 or halves (pipeline constants).
        let halves = [
            ("B_HALVES", inputs.b.dtype().is_half() as u32 as f64),
            ("C_HALVES", inputs.c.dtype().is_half() as u32 as f64),
        ];
        let (kernel, wg) = match self.strategy_for_dtype(&dims, act) {
            ScanStrategy::ChunkedParallel if storage == Flags::NONE => (self.chunked.clone(), 1),
            ScanStrategy::ChunkedParallel => {
                let base = if self.chunked_subgroups {
                    CHUNKED_SUBGROUP
                } else {
                    CHUNKED
                };
                let v = CHUNKED_SHADER.variant(base.flags.union(storage), INTERFACE);
                (gpu.kernel(&v, &halves)?, 1)
            }
            _ => {
                let w = rows_per_workgroup(rows);
                let k = match (storage == Flags::NONE, w) {
                    (true, _) if self.rows_read_vec4(len) => {
                        gpu.kernel(&ROWS_SHARED_VEC4, &[("WG", w as f64)])?
                    }
                    (true, 64) => self.kernel.clone(),
                    (true, _) => self.kernel_small.clone(),
                    (false, _) => {
                        let v = SHADER.variant(self.rows_flags.union(storage), INTERFACE);
                        gpu.kernel(&v, &[("WG", w as f64), halves[0], halves[1]])?
                    }
                };
                (k, w)
            }
        };
        for (r0, r1) in plan {
            let (u_bind, off_x) = window(gpu, inputs.u, r0 * len, r1 * len)?;
            let (delta_bind, _) = window(gpu, inputs.delta, r0 * len, r1 * len)?;
            let (out_bind, _) = window(gpu, out, r0 * len, r1 * len)?;
            let z_bind = match inputs.z {
                Some(z) => window(gpu, z, r0 * len, r1 * len)?.0,
                None => u_bind.clone(),
            };
            let (state_bind, off_s) = window(gpu, last_state, r0 * n, r1 * n)?;
            let bc = |t: &Tensor, layout: BcLayout| -> Result<(Binding, u32)> {
                match layout {
                    BcLayout::Constant => Ok((t.into(), 0)),
                    BcLayout::Grouped(g) => {
                        let per = g * n * len;
                        window(gpu, t, (r0 / dim) * per, (r1 - 1) / dim * per + per)
                    }
                }
            };
            let (b_bind, off_b) = bc(inputs.b, dims.b)?;
            let (c_bind, off_c) = bc(inputs.c, dims.c)?;
            let uniforms = Uniforms {
                rows: (r1 - r0) as u32,
                row0: r0 as u32,
                dim: dim as u32,
                len: len as u32,
                n: n as u32,
                b_groups: dims.b.groups() as u32,
                c_groups: dims.c.groups() as u32,
                flags,
                off_x,
                off_b,
                off_c,
                off_s,
                p_d: p_d as u32,
                p_bias: p_bias as u32,
                ..Default::default()
            };
            batch.dispatch(
                &kernel,
                &uniforms,
                &[
                    u_bind,
                    delta_bind,
                    (&scratch).into(),
                    b_bind,
                    c_bind,
                    z_bind,
                    out_bind,
                    state_bind,
                ],
                (r1 - r0).div_ceil(wg) as u32,
            )?;
        }
        Ok(())
    }
}
