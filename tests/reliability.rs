//! Reliability (issue 7): property tests over random shapes and options against the CPU
//! reference, NaN confined to the outputs it reaches, bit-identical repeated runs, and a long
//! decode loop that equals the one-shot scan without allocating per step.

mod common;
use common::*;
use proptest::prelude::*;
use ssm_mla::ops::selective_scan::{
    BcLayout, ScanOptions, ScanStrategy, SelectiveScan, SelectiveScanInputs,
};
use ssm_mla::ops::state_update::{StateUpdate, StateUpdateInputs};
use ssm_mla::testing::mla::tiny_config;
use ssm_mla::testing::selective_scan::{dims, Problem, TOLERANCE as TOL};
use ssm_mla::{DType, Gpu, Rng, Tolerance};

/// Both scan strategies, run explicitly.
const STRATEGIES: [ScanStrategy; 2] = [ScanStrategy::RowSequential, ScanStrategy::ChunkedParallel];

/// A scan problem from `seed`: sizes (Bt, D, L, N), B and C layouts, and the options
/// [D, z, delta_bias, initial_state, softplus].
fn problem(
    seed: u64,
    (batch, dim, len, n): (usize, usize, usize, usize),
    b: BcLayout,
    c: BcLayout,
    [d, z, delta_bias, initial_state, delta_softplus]: [bool; 5],
) -> Problem {
    let options = ScanOptions {
        d,
        z,
        delta_bias,
        delta_softplus,
        initial_state,
    };
    Problem::random(&mut Rng::new(seed), dims(batch, dim, len, n, b, c), options)
}

/// Run on the GPU with poisoned outputs; (out, last_state).
fn run(p: &Problem, gpu: &Gpu, strategy: ScanStrategy) -> (Vec<f32>, Vec<f32>) {
    let op = SelectiveScan::with_strategy(gpu, strategy).unwrap();
    pollster::block_on(p.run(gpu, &op)).unwrap()
}

fn layout() -> impl Strategy<Value = (bool, usize)> {
    (any::<bool>(), 1usize..=3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random shapes (ragged L across chunk boundaries, N from 1 to 40, groups dividing D) and
    /// random options: the GPU scan equals the f64 reference on both devices.
    #[test]
    fn selective_scan_matches_reference_on_random_shapes(
        seed in any::<u64>(),
        batch in 1usize..=2,
        groups_per_channel in 1usize..=3,
        channels_per_group in 1usize..=3,
        len in 1usize..=700,
        n in 1usize..=40,
        (b_variable, b_groups) in layout(),
        (c_variable, c_groups) in layout(),
        options in any::<[bool; 5]>(),
    ) {
        // D is a multiple of both group counts so every layout is valid.
        let dim = b_groups * c_groups * groups_per_channel * channels_per_group;
        let b = if b_variable { BcLayout::Grouped(b_groups) } else { BcLayout::Constant };
        let c = if c_variable { BcLayout::Grouped(c_groups) } else { BcLayout::Constant };
        let p = problem(seed, (batch, dim, len, n), b, c, options);
        let want = p.reference().unwrap();
        for (name, gpu) in gpus() {
            for strategy in STRATEGIES {
                let (out, last) = run(&p, &gpu, strategy);
                let oc = ssm_mla::compare(&out, &want.out, TOL);
                let lc = ssm_mla::compare(&last, &want.last_state, TOL);
                prop_assert!(oc.passed(), "{name} {strategy:?} out: {oc}");
                prop_assert!(lc.passed(), "{name} {strategy:?} last_state: {lc}");
            }
        }
    }
}

#[test]
fn nan_input_poisons_only_the_outputs_it_reaches() {
    let (_, seed) = rng("nan propagation");
    let dims = (2, 3, 40, 16);
    let clean = problem(
        seed,
        dims,
        BcLayout::Constant,
        BcLayout::Constant,
        [true; 5],
    );
    let mut dirty = problem(
        seed,
        dims,
        BcLayout::Constant,
        BcLayout::Constant,
        [true; 5],
    );
    let (batch, dim, len, n) = dims;
    // u of batch 1, channel 2, step 17 becomes NaN: that row's outputs from step 17 on and its
    // last state are NaN; every other row is bit-identical to the clean run.
    let (b0, d0, t0) = (1, 2, 17);
    dirty.u[(b0 * dim + d0) * len + t0] = f32::NAN;
    let gpu = gpu();
    for strategy in STRATEGIES {
        let (out_c, last_c) = run(&clean, &gpu, strategy);
        let (out_d, last_d) = run(&dirty, &gpu, strategy);
        for b in 0..batch {
            for d in 0..dim {
                let row = (b * dim + d) * len;
                for t in 0..len {
                    let (x, y) = (out_c[row + t], out_d[row + t]);
                    if (b, d) == (b0, d0) && t >= t0 {
                        assert!(y.is_nan(), "out[{b},{d},{t}] should be NaN, got {y}");
                    } else {
                        assert_eq!(
                            x.to_bits(),
                            y.to_bits(),
                            "out[{b},{d},{t}] changed (seed {seed})"
                        );
                    }
                }
                let state = (b * dim + d) * n;
                for k in 0..n {
                    let (x, y) = (last_c[state + k], last_d[state + k]);
                    if (b, d) == (b0, d0) {
                        assert!(y.is_nan(), "last_state[{b},{d},{k}] should be NaN");
                    } else {
                        assert_eq!(x.to_bits(), y.to_bits(), "last_state[{b},{d},{k}] changed");
                    }
                }
            }
        }
    }
}

#[test]
fn repeated_runs_are_bit_identical() {
    let (_, seed) = rng("bit-identical");
    let p = problem(
        seed,
        (2, 6, 1100, 16),
        BcLayout::Grouped(2),
        BcLayout::Grouped(3),
        [true; 5],
    );
    for (name, gpu) in gpus() {
        for strategy in STRATEGIES {
            let first = run(&p, &gpu, strategy);
            for _ in 0..3 {
                let again = run(&p, &gpu, strategy);
                let same =
                    |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(
                    same(&first.0, &again.0) && same(&first.1, &again.1),
                    "{name} {strategy:?}: results differ between runs"
                );
            }
        }
    }
}

#[test]
fn a_thousand_decode_steps_equal_the_scan_without_per_step_allocation() {
    let (_, seed) = rng("long decode");
    let (batch, dim, len, n) = (2, 4, 1000, 16);
    let p = problem(
        seed,
        (batch, dim, len, n),
        BcLayout::Grouped(1),
        BcLayout::Grouped(1),
        [true, true, true, false, true],
    );
    let want = p.reference().unwrap();
    let gpu = Gpu::new().expect("GPU tests need an adapter");
    let up = |shape: &[usize], v: &[f32]| gpu.upload_f32(shape, v).unwrap();
    let a = up(&[dim, n], &p.a);
    let d = up(&[dim], p.d.as_ref().unwrap());
    let bias = up(&[dim], p.delta_bias.as_ref().unwrap());
    let state = up(&[batch, dim, n], &vec![0.0; batch * dim * n]);
    let (x, dt, z) = (
        gpu.empty(&[batch, dim], DType::F32).unwrap(),
        gpu.empty(&[batch, dim], DType::F32).unwrap(),
        gpu.empty(&[batch, dim], DType::F32).unwrap(),
    );
    let (b, c) = (
        gpu.empty(&[batch, n], DType::F32).unwrap(),
        gpu.empty(&[batch, n], DType::F32).unwrap(),
    );
    let y = gpu.empty(&[len * batch * dim], DType::F32).unwrap();
    let out_row = gpu.empty(&[batch, dim], DType::F32).unwrap();
    let op = StateUpdate::new(&gpu).unwrap();
    let column = |v: &[f32], rows: usize, t: usize| -> Vec<f32> {
        (0..rows).map(|r| v[r * len + t]).collect()
    };
    let mut counters = None;
    for t in 0..len {
        let mut work = gpu.batch();
        work.write(&x, 0, &column(&p.u, batch * dim, t)).unwrap();
        work.write(&dt, 0, &column(&p.delta, batch * dim, t))
            .unwrap();
        work.write(&z, 0, &column(p.z.as_ref().unwrap(), batch * dim, t))
            .unwrap();
        work.write(&b, 0, &column(&p.b, batch * n, t)).unwrap();
        work.write(&c, 0, &column(&p.c, batch * n, t)).unwrap();
        op.record(
            &mut work,
            &StateUpdateInputs {
                state: &state,
                x: &x,
                dt: &dt,
                a: &a,
                b: &b,
                c: &c,
                d: Some(&d),
                z: Some(&z),
                dt_bias: Some(&bias),
                state_batch_indices: None,
                dt_softplus: true,
            },
            &out_row,
        )
        .unwrap();
        let row_bytes = (batch * dim * 4) as u64;
        work.copy(&out_row, 0, &y, t as u64 * row_bytes, row_bytes)
            .unwrap();
        work.run().unwrap();
        if t == 2 {
            counters = Some(gpu.resource_counters());
        }
    }
    assert_eq!(
        Some(gpu.resource_counters()),
        counters,
        "nothing created per step"
    );
    // y is (L, Bt, D); the scan's out is (Bt, D, L).
    let got = gpu.read_f32(&y).unwrap();
    let mut got_bdl = vec![0.0f32; got.len()];
    for t in 0..len {
        for r in 0..batch * dim {
            got_bdl[r * len + t] = got[t * batch * dim + r];
        }
    }
    assert_close("decode ×1000 vs scan: out", &got_bdl, &want.out, TOL, seed);
    assert_close(
        "decode ×1000 vs scan: state",
        &gpu.read_f32(&state).unwrap(),
        &want.last_state,
        TOL,
        seed,
    );
}

#[test]
fn a_thousand_mla_decode_steps_equal_one_prefill_without_per_step_allocation() {
    let (mut rng, seed) = rng("long MLA decode");
    let cfg = tiny_config();
    let (bt, s, hid) = (2usize, 1000usize, cfg.hidden_size);
    let weights = ssm_mla::mla::MlaWeights::random(&cfg, &mut rng);
    let gpu = std::sync::Arc::new(Gpu::new().expect("GPU tests need an adapter"));
    let layer = ssm_mla::mla::MlaLayer::new(gpu.clone(), &cfg, &weights).unwrap();
    let hidden = rng.normal_vec(bt * s * hid, 0.0, 1.0);

    // One shot: all S tokens in one prefill.
    let mut cache = layer.new_cache(bt, s, 64).unwrap();
    let all = gpu.upload_f32(&[bt, s, hid], &hidden).unwrap();
    let one_shot = gpu
        .read_f32(&layer.forward(&mut cache, &[0, 1], &all).unwrap())
        .unwrap();

    // A second one-shot run on a fresh cache is bit-identical.
    let mut again = layer.new_cache(bt, s, 64).unwrap();
    let rerun = gpu
        .read_f32(&layer.forward(&mut again, &[0, 1], &all).unwrap())
        .unwrap();
    assert!(
        one_shot
            .iter()
            .zip(&rerun)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "repeated MLA prefill differs"
    );

    // Token by token: one persistent input and output row, results gathered on the GPU.
    let mut cache = layer.new_cache(bt, s, 64).unwrap();
    let step_in = gpu.empty(&[bt, 1, hid], DType::F32).unwrap();
    let step_out = gpu.empty(&[bt, 1, hid], DType::F32).unwrap();
    let gathered = gpu.nan_f32(&[bt, s, hid]).unwrap();
    let row = (hid * 4) as u64;
    let mut warm = None;
    for t in 0..s {
        let mut work = gpu.batch();
        for b in 0..bt {
            let at = (b * s + t) * hid;
            work.write(&step_in, b * hid, &hidden[at..at + hid])
                .unwrap();
        }
        layer
            .record(&mut work, &mut cache, &[0, 1], &step_in, &step_out)
            .unwrap();
        for b in 0..bt {
            work.copy(
                &step_out,
                b as u64 * row,
                &gathered,
                ((b * s + t) * hid) as u64 * 4,
                row,
            )
            .unwrap();
        }
        work.run().unwrap();
        if t == 3 {
            warm = Some(gpu.resource_counters());
        }
    }
    // The attention op re-plans its split-KV as the context crosses split boundaries (every
    // 256 keys here), which binds its scratch differently: a few bind groups per re-plan, none
    // per step. Buffers are never created after warm-up.
    let (now, warm) = (gpu.resource_counters(), warm.unwrap());
    assert_eq!(now.uniform_buffers_created, warm.uniform_buffers_created);
    assert_eq!(now.upload_buffers_created, warm.upload_buffers_created);
    assert!(
        now.bind_groups_created - warm.bind_groups_created <= 16,
        "bind groups grew per step: {warm:?} -> {now:?}"
    );
    let streamed = gpu.read_f32(&gathered).unwrap();
    let reference: Vec<f64> = one_shot.iter().map(|&v| v as f64).collect();
    assert_close(
        "1000 decode steps vs one prefill",
        &streamed,
        &reference,
        Tolerance::new(1e-4, 1e-3),
        seed,
    );
}

#[test]
fn zero_sized_dimensions_are_errors() {
    let gpu = gpu();
    let (mut rng, _) = rng("zero sizes");
    let p = problem(
        1,
        (1, 2, 3, 4),
        BcLayout::Constant,
        BcLayout::Constant,
        [false; 5],
    );
    let s = &p.dims;
    let up = |shape: &[usize], v: &[f32]| gpu.upload_f32(shape, v).unwrap();
    let empty_u = gpu.empty(&[1, 2, 0], DType::F32).unwrap();
    let (delta, a) = (up(&[1, 2, 3], &p.delta), up(&[s.dim, s.n], &p.a));
    let (b, c) = (up(&[s.dim, s.n], &p.b), up(&[s.dim, s.n], &p.c));
    let out = gpu.empty(&[1, 2, 3], DType::F32).unwrap();
    let last = gpu.empty(&[1, 2, 4], DType::F32).unwrap();
    let mut batch = gpu.batch();
    let err = SelectiveScan::new(&gpu)
        .unwrap()
        .record(
            &mut batch,
            &SelectiveScanInputs {
                u: &empty_u,
                delta: &delta,
                a: &a,
                b: &b,
                c: &c,
                d: None,
                z: None,
                delta_bias: None,
                initial_state: None,
                delta_softplus: false,
            },
            &out,
            &last,
        )
        .unwrap_err();
    assert!(err.to_string().contains("`u`"), "{err}");
    assert_eq!(batch.dispatches(), 0);

    // The MLA layer: zero tokens.
    let cfg = tiny_config();
    let weights = ssm_mla::mla::MlaWeights::random(&cfg, &mut rng);
    let layer = ssm_mla::mla::MlaLayer::new(gpu.clone(), &cfg, &weights).unwrap();
    let mut cache = layer.new_cache(1, 8, 4).unwrap();
    let none = gpu.empty(&[1, 0, cfg.hidden_size], DType::F32).unwrap();
    let err = layer.forward(&mut cache, &[0], &none).unwrap_err();
    assert!(err.to_string().contains("hidden_states"), "{err}");
    assert_eq!(cache.seq_len(0), 0, "nothing appended on error");
}

#[test]
fn a_destroyed_device_gives_errors_not_panics() {
    let adapter = ssm_mla::runtime::adapter_from_env().expect("GPU tests need an adapter");
    let gpu = Gpu::from_adapter(&adapter, &Default::default()).unwrap();
    let t = gpu.upload_f32(&[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    gpu.device().destroy();
    let result = ssm_mla::ops::stream_copy::stream_copy(&gpu, &t).and_then(|y| gpu.read_f32(&y));
    let err = result.expect_err("work on a destroyed device must fail");
    eprintln!("destroyed device: {err}");
    // Later calls keep failing cleanly.
    assert!(gpu
        .upload_f32(&[2], &[1.0, 2.0])
        .and_then(|x| gpu.read_f32(&x))
        .is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// The loading paths never panic: arbitrary bytes and corruptions of a valid file given to the
    /// safetensors loader, arbitrary text to the config loader (the cargo-fuzz targets in `fuzz/`
    /// run the same properties with coverage guidance).
    #[test]
    fn loaders_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        text in ".{0,200}",
    ) {
        let _ = ssm_mla::SafeTensors::from_bytes(&bytes, "random");
        let a = ssm_mla::HostTensor::new(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let mut valid = ssm_mla::io::to_safetensors_bytes(&[("a", &a), ("b", &a)]).unwrap();
        for (at, value) in &flips {
            let i = at.index(valid.len());
            valid[i] = *value;
        }
        if let Ok(file) = ssm_mla::SafeTensors::from_bytes(&valid, "corrupted") {
            for name in file.names() {
                let t = file.get(name).unwrap();
                prop_assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
            }
        }
        let _ = ssm_mla::mla::MlaConfig::from_json_str(&text, "random");
        let mut config = r#"{"hidden_size": 64, "num_attention_heads": 4, "kv_lora_rank": 32,
            "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16}"#.as_bytes().to_vec();
        for (at, value) in &flips {
            let i = at.index(config.len());
            config[i] = *value;
        }
        if let Ok(text) = std::str::from_utf8(&config) {
            if let Ok(cfg) = ssm_mla::mla::MlaConfig::from_json_str(text, "corrupted") {
                let _ = (cfg.softmax_scale(), cfg.inv_freq(), cfg.cache_values_per_token());
            }
        }
    }
}
