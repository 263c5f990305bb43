//! The MLA layer's packed calls (`MlaLayer::record_packed`): sequences bringing different numbers
//! of new tokens in one call, a prompt prefilled in chunks over the paged cache (equal to the
//! one-shot prefill), a mixed step of prefilling and decoding sequences, the residual-add
//! (`accumulate`) form, layers sharing their intermediates, and the errors (which leave the
//! cache unchanged). Outputs are NaN-poisoned before each run.
//! Tolerance against the f64 CPU layer: the MLA tests' 1e-4 + 2e-3·|ref| (f32 through six
//! chained products of length ≤ 64 and a softmax; outputs are O(1)). GPU against GPU (the same
//! tokens in differently shaped calls, so different tilings and split counts): 1e-5 + 1e-4·|ref|.

mod common;
use common::*;
use ssm_mla::mla::{MlaCache, MlaLayer, MlaSeq, MlaWeights};
use ssm_mla::reference::mla::MlaCpuLayer;
use ssm_mla::testing::mla::{small_config, Problem, TOLERANCE as TOL};
use ssm_mla::{Error, Gpu, Rng, Tensor, Tolerance};

const GPU_VS_GPU: Tolerance = Tolerance::new(1e-5, 1e-4);

fn seqs(list: &[(usize, usize)]) -> Vec<MlaSeq> {
    list.iter()
        .map(|&(seq, tokens)| MlaSeq { seq, tokens })
        .collect()
}

/// One packed call into a NaN-poisoned output; returns it on the host.
fn run_packed(
    gpu: &Gpu,
    layer: &MlaLayer,
    cache: &mut MlaCache,
    list: &[MlaSeq],
    hidden: &[f32],
) -> Vec<f32> {
    let hid = layer.config().hidden_size;
    let t = hidden.len() / hid;
    let x = gpu.upload_f32(&[t, hid], hidden).unwrap();
    let out = gpu.nan_f32(&[t, hid]).unwrap();
    let mut batch = gpu.batch();
    layer
        .record_packed(&mut batch, cache, list, &x, &out, false)
        .unwrap();
    batch.run().unwrap();
    gpu.read_f32(&out).unwrap()
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// (a) Three sequences of 1, 17 and 40 new tokens (two with context already cached) in one call
/// equal the CPU layer and each sequence run alone on the GPU.
#[test]
fn ragged_call_equals_each_sequence_alone() {
    let (mut rng, seed) = rng("mla packed ragged");
    let gpu = gpu();
    let cfg = small_config(3, Some(16), true, false);
    let w = MlaWeights::random(&cfg, &mut rng);
    let hid = cfg.hidden_size;
    let layer = MlaLayer::new(gpu.clone(), &cfg, &w).unwrap();
    let mut together = layer.new_cache(3, 64, 4).unwrap();
    let mut alone = layer.new_cache(3, 64, 4).unwrap();
    let mut cpu = MlaCpuLayer::new(&cfg, &w, 3).unwrap();
    // Context: sequence 0 holds 6 tokens, sequence 2 holds 9, sequence 1 none.
    let context = seqs(&[(2, 9), (0, 6)]);
    let h0 = rng.normal_vec(15 * hid, 0.0, 1.0);
    run_packed(&gpu, &layer, &mut together, &context, &h0);
    run_packed(&gpu, &layer, &mut alone, &context, &h0);
    cpu.forward_packed(&context, &h0).unwrap();

    let list = seqs(&[(0, 1), (1, 17), (2, 40)]);
    let h = rng.normal_vec(58 * hid, 0.0, 1.0);
    let got = run_packed(&gpu, &layer, &mut together, &list, &h);
    let want = cpu.forward_packed(&list, &h).unwrap();
    assert_close("packed [1, 17, 40] vs cpu", &got, &want, TOL, seed);
    let mut row = 0;
    for q in &list {
        let part = &h[row * hid..(row + q.tokens) * hid];
        let one = run_packed(&gpu, &layer, &mut alone, &[*q], part);
        assert_close(
            &format!("sequence {} alone vs packed", q.seq),
            &one,
            &to_f64(&got[row * hid..(row + q.tokens) * hid]),
            GPU_VS_GPU,
            seed,
        );
        row += q.tokens;
    }
    for s in 0..3 {
        assert_eq!(together.seq_len(s), alone.seq_len(s));
        assert_eq!(together.seq_len(s), cpu.seq_len(s));
    }
    assert_eq!(
        (
            together.seq_len(0),
            together.seq_len(1),
            together.seq_len(2)
        ),
        (7, 17, 49)
    );
}

/// (b) A 70-token prompt prefilled in chunks of 32 + 32 + 6 equals the one-shot prefill, on the
/// GPU and against the CPU naive form.
#[test]
fn chunked_prefill_equals_one_shot() {
    let (mut rng, seed) = rng("mla chunked prefill");
    let gpu = gpu();
    let cfg = small_config(4, None, true, true);
    let problem = Problem::random(&mut rng, &cfg, 1, 70);
    let (w, h, hid) = (&problem.weights, &problem.hidden, cfg.hidden_size);
    let want = problem.reference();
    let layer = MlaLayer::new(gpu.clone(), &cfg, w).unwrap();
    let mut cache = layer.new_cache(1, 70, 16).unwrap();
    let one_shot = run_packed(&gpu, &layer, &mut cache, &seqs(&[(0, 70)]), h);
    assert_close("one-shot vs cpu naive", &one_shot, &want, TOL, seed);

    let mut cache = layer.new_cache(1, 70, 16).unwrap();
    let mut chunked = Vec::new();
    let mut start = 0;
    for len in [32, 32, 6] {
        let part = &h[start * hid..(start + len) * hid];
        chunked.extend(run_packed(
            &gpu,
            &layer,
            &mut cache,
            &seqs(&[(0, len)]),
            part,
        ));
        start += len;
        assert_eq!(cache.seq_len(0), start);
    }
    assert_close("chunked vs cpu naive", &chunked, &want, TOL, seed);
    assert_close(
        "chunked vs one-shot",
        &chunked,
        &to_f64(&one_shot),
        GPU_VS_GPU,
        seed,
    );
    // The CPU layer fed the same chunks.
    let mut cpu = MlaCpuLayer::new(&cfg, w, 1).unwrap();
    let mut cpu_chunked = Vec::new();
    let mut start = 0;
    for len in [32, 32, 6] {
        let part = &h[start * hid..(start + len) * hid];
        cpu_chunked.extend(cpu.forward_packed(&seqs(&[(0, len)]), part).unwrap());
        start += len;
    }
    let got: Vec<f32> = cpu_chunked.iter().map(|&x| x as f32).collect();
    assert_close(
        "cpu chunked vs cpu naive",
        &got,
        &want,
        Tolerance::new(1e-6, 1e-5),
        seed,
    );
}

/// (c) One sequence prefills 20 tokens while two others decode one token each, in one step.
#[test]
fn mixed_prefill_and_decode_step() {
    let (mut rng, seed) = rng("mla mixed step");
    let gpu = gpu();
    let cfg = small_config(3, None, false, false);
    let w = MlaWeights::random(&cfg, &mut rng);
    let hid = cfg.hidden_size;
    let layer = MlaLayer::new(gpu.clone(), &cfg, &w).unwrap();
    let mut cache = layer.new_cache(3, 40, 8).unwrap();
    let mut cpu = MlaCpuLayer::new(&cfg, &w, 3).unwrap();
    let context = seqs(&[(1, 7), (2, 12)]);
    let h0 = rng.normal_vec(19 * hid, 0.0, 1.0);
    let got = run_packed(&gpu, &layer, &mut cache, &context, &h0);
    let want = cpu.forward_packed(&context, &h0).unwrap();
    assert_close("context", &got, &want, TOL, seed);
    for step in 0..3 {
        // Sequence 0 prefills 20 tokens in the first step and then decodes with the others.
        let n0 = if step == 0 { 20 } else { 1 };
        let list = seqs(&[(2, 1), (0, n0), (1, 1)]);
        let h = rng.normal_vec((n0 + 2) * hid, 0.0, 1.0);
        let got = run_packed(&gpu, &layer, &mut cache, &list, &h);
        let want = cpu.forward_packed(&list, &h).unwrap();
        assert_close(&format!("mixed step {step}"), &got, &want, TOL, seed);
    }
    assert_eq!(
        (cache.seq_len(0), cache.seq_len(1), cache.seq_len(2)),
        (22, 10, 15)
    );
}

/// (d) With `accumulate`, out += o_proj(attn): out pre-filled with random values.
#[test]
fn accumulate_adds_into_out() {
    let (mut rng, seed) = rng("mla accumulate");
    let gpu = gpu();
    let cfg = small_config(3, Some(16), false, true);
    let w = MlaWeights::random(&cfg, &mut rng);
    let hid = cfg.hidden_size;
    let layer = MlaLayer::new(gpu.clone(), &cfg, &w).unwrap();
    let mut cache = layer.new_cache(2, 16, 4).unwrap();
    let mut cpu = MlaCpuLayer::new(&cfg, &w, 2).unwrap();
    let list = seqs(&[(1, 5), (0, 2)]);
    let h = rng.normal_vec(7 * hid, 0.0, 1.0);
    let residual = rng.normal_vec(7 * hid, 0.0, 1.0);
    let x = gpu.upload_f32(&[7, hid], &h).unwrap();
    let out = gpu.upload_f32(&[7, hid], &residual).unwrap();
    let mut batch = gpu.batch();
    layer
        .record_packed(&mut batch, &mut cache, &list, &x, &out, true)
        .unwrap();
    batch.run().unwrap();
    let got = gpu.read_f32(&out).unwrap();
    let attn = cpu.forward_packed(&list, &h).unwrap();
    let want: Vec<f64> = attn
        .iter()
        .zip(&residual)
        .map(|(a, &r)| a + r as f64)
        .collect();
    assert_close("out + attn", &got, &want, TOL, seed);
    // out may not be hidden when accumulating; the cache is unchanged by the refusal.
    let lens = (cache.seq_len(0), cache.seq_len(1));
    let mut batch = gpu.batch();
    let e = layer
        .record_packed(&mut batch, &mut cache, &list, &x, &x, true)
        .unwrap_err();
    assert!(e.to_string().contains("must not be"), "{e}");
    assert_eq!((cache.seq_len(0), cache.seq_len(1)), lens);
    assert_eq!(batch.dispatches(), 0);
}

/// Two layers sharing one set of intermediates, recorded in one batch (the second reads the
/// first's output), equal the CPU layers run one after the other.
#[test]
fn layers_sharing_scratch_run_in_one_batch() {
    let (mut rng, seed) = rng("mla shared scratch");
    let gpu = gpu();
    let cfg = small_config(3, Some(16), true, false);
    let (w1, w2) = (
        MlaWeights::random(&cfg, &mut rng),
        MlaWeights::random(&cfg, &mut rng),
    );
    let hid = cfg.hidden_size;
    let first = MlaLayer::new(gpu.clone(), &cfg, &w1).unwrap();
    let mut second = MlaLayer::new(gpu.clone(), &cfg, &w2).unwrap();
    second.share_scratch(&first);
    let mut caches = [
        first.new_cache(2, 32, 4).unwrap(),
        second.new_cache(2, 32, 4).unwrap(),
    ];
    let mut cpu = [
        MlaCpuLayer::new(&cfg, &w1, 2).unwrap(),
        MlaCpuLayer::new(&cfg, &w2, 2).unwrap(),
    ];
    for list in [seqs(&[(0, 9), (1, 4)]), seqs(&[(1, 1), (0, 1)])] {
        let t: usize = list.iter().map(|q| q.tokens).sum();
        let h = rng.normal_vec(t * hid, 0.0, 1.0);
        let x = gpu.upload_f32(&[t, hid], &h).unwrap();
        let mid = gpu.nan_f32(&[t, hid]).unwrap();
        let out = gpu.nan_f32(&[t, hid]).unwrap();
        let mut batch = gpu.batch();
        let [c1, c2] = &mut caches;
        first
            .record_packed(&mut batch, c1, &list, &x, &mid, false)
            .unwrap();
        second
            .record_packed(&mut batch, c2, &list, &mid, &out, false)
            .unwrap();
        batch.run().unwrap();
        let a = cpu[0].forward_packed(&list, &h).unwrap();
        let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
        let want = cpu[1].forward_packed(&list, &a32).unwrap();
        assert_close(
            &format!("two layers {list:?}"),
            &gpu.read_f32(&out).unwrap(),
            &want,
            TOL,
            seed,
        );
    }
}

/// (e) Errors before anything is recorded, with the cache unchanged: T mismatch, a duplicate
/// sequence, a sequence out of range, no tokens, a full cache.
#[test]
fn packed_errors_leave_the_cache_unchanged() {
    let gpu = gpu();
    let cfg = small_config(3, None, false, false);
    let w = MlaWeights::random(&cfg, &mut Rng::new(3));
    let hid = cfg.hidden_size;
    let layer = MlaLayer::new(gpu.clone(), &cfg, &w).unwrap();
    // 6 pages of 2 tokens.
    let mut cache = layer.new_cache(3, 4, 2).unwrap();
    run_packed(
        &gpu,
        &layer,
        &mut cache,
        &seqs(&[(0, 3), (2, 1)]),
        &vec![0.1; 4 * hid],
    );
    let before = (
        cache.seq_len(0),
        cache.seq_len(1),
        cache.seq_len(2),
        cache.free_blocks(),
    );
    assert_eq!(before, (3, 0, 1, 3));
    let x = |t: usize| gpu.upload_f32(&[t, hid], &vec![0.1; t * hid]).unwrap();
    let mut expect_err = |list: &[MlaSeq], hidden: &Tensor, needle: &str| -> Error {
        let out = gpu.nan_f32(hidden.shape()).unwrap();
        let mut batch = gpu.batch();
        let e = layer
            .record_packed(&mut batch, &mut cache, list, hidden, &out, false)
            .unwrap_err();
        assert!(e.to_string().contains(needle), "{needle}: {e}");
        assert_eq!(batch.dispatches(), 0, "nothing recorded on error");
        let now = (
            cache.seq_len(0),
            cache.seq_len(1),
            cache.seq_len(2),
            cache.free_blocks(),
        );
        assert_eq!(now, before, "the cache changed on error: {e}");
        e
    };
    // T = 3 tokens listed, 4 rows given.
    let e = expect_err(&seqs(&[(1, 2), (2, 1)]), &x(4), "hidden_states");
    assert!(e.to_string().contains("T = Σ tokens = 3"), "{e}");
    expect_err(&seqs(&[(1, 1), (1, 1)]), &x(2), "listed twice");
    expect_err(&seqs(&[(3, 1)]), &x(1), "sequence 3");
    expect_err(&seqs(&[(1, 0), (2, 1)]), &x(1), "no tokens");
    expect_err(&[], &x(1), "at least one");
    // Sequence 1 needs 4 pages for 7 tokens; 3 are free.
    let e = expect_err(&seqs(&[(1, 7)]), &x(7), "free pages");
    assert!(matches!(e, Error::CacheFull { .. }), "{e:?}");
    // Each would fit alone; together they need 2 + 0 + 2 pages.
    expect_err(&seqs(&[(1, 4), (0, 1), (2, 5)]), &x(10), "free pages");
    // A wrong width.
    let bad = gpu
        .upload_f32(&[2, hid - 1], &vec![0.1; 2 * (hid - 1)])
        .unwrap();
    expect_err(&seqs(&[(1, 2)]), &bad, "hidden_states");
    // And a call that fits still works afterwards.
    run_packed(
        &gpu,
        &layer,
        &mut cache,
        &seqs(&[(1, 4), (0, 1)]),
        &vec![0.1; 5 * hid],
    );
    assert_eq!((cache.seq_len(0), cache.seq_len(1)), (4, 4));
}

/// (g) `record_append_latent`: the latent rows a prefill wrote, read back and appended as they
/// are to a fresh cache, give the next decode step the same output, bit for bit; and its
/// errors (wrong width, a full cache) record nothing and leave the cache unchanged.
#[test]
fn appended_latent_rows_serve_like_prefilled_ones() {
    let gpu = gpu();
    let cfg = small_config(3, None, false, false);
    let w = MlaWeights::random(&cfg, &mut Rng::new(5));
    let mut rng = Rng::new(6);
    let hid = cfg.hidden_size;
    let width = cfg.latent_dim();
    let layer = MlaLayer::new(gpu.clone(), &cfg, &w).unwrap();
    // 11 prompt tokens over pages of 4: the last page is partly filled.
    let prompt = rng.normal_vec(11 * hid, 0.0, 1.0);
    let step = rng.normal_vec(hid, 0.0, 1.0);
    let mut prefilled = layer.new_cache(1, 16, 4).unwrap();
    run_packed(&gpu, &layer, &mut prefilled, &seqs(&[(0, 11)]), &prompt);
    // A fresh cache hands out pages 0, 1, 2, … in order, so the prompt's rows are slots 0..11.
    let data = gpu.read_f32(&prefilled.cache.data).unwrap();
    let rows = gpu.upload_f32(&[11, width], &data[..11 * width]).unwrap();
    let mut appended = layer.new_cache(1, 16, 4).unwrap();
    let mut batch = gpu.batch();
    layer
        .record_append_latent(&mut batch, &mut appended, &seqs(&[(0, 11)]), &rows)
        .unwrap();
    batch.run().unwrap();
    assert_eq!(appended.seq_len(0), 11);
    let a = run_packed(&gpu, &layer, &mut prefilled, &seqs(&[(0, 1)]), &step);
    let b = run_packed(&gpu, &layer, &mut appended, &seqs(&[(0, 1)]), &step);
    assert!(a.iter().all(|v| v.is_finite()));
    assert_eq!(
        a, b,
        "decode after appended rows differs from decode after the prefill"
    );

    // Errors: a row width other than d_c + d_R, more tokens than free pages.
    let before = (appended.seq_len(0), appended.free_blocks());
    for (tokens, w, needle) in [(2, width - 1, "latent"), (8, width, "free pages")] {
        let bad = gpu
            .upload_f32(&[tokens, w], &vec![0.5; tokens * w])
            .unwrap();
        let mut batch = gpu.batch();
        let e = layer
            .record_append_latent(&mut batch, &mut appended, &seqs(&[(0, tokens)]), &bad)
            .unwrap_err();
        assert!(e.to_string().contains(needle), "{needle}: {e}");
        assert_eq!(batch.dispatches(), 0, "nothing recorded on error");
        assert_eq!((appended.seq_len(0), appended.free_blocks()), before);
    }
}
