//! Misuse of the API, as a new user would try it, comes back as a clear typed error and changes
//! nothing: tensors of another `Gpu`, host data of the wrong element type, copies out of range,
//! an app's own invalid GPU work on an adopted device (the app's handler sees it, the crate's next
//! call is unaffected), a full latent cache, and a tensor missing from an in-memory safetensors.

mod common;
use common::*;
use ssm_mla::io::{to_safetensors_bytes, HostTensor, SafeTensors};
use ssm_mla::mla::{MlaConfig, MlaLayer, MlaWeights};
use ssm_mla::ops::matmul::Matmul;
use ssm_mla::ops::stream_copy::{stream_copy, StreamCopy};
use ssm_mla::{wgpu, DType, Error, Gpu, Rng, Shader};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn new_gpu() -> Gpu {
    Gpu::new().expect("GPU tests need an adapter and never skip")
}

/// y = x·Wᵀ for 1×1 tensors: x = 7, W = 1 (the identity), y poisoned with NaN.
fn identity_product(op: &Matmul, gpu: &Gpu, x: &ssm_mla::Tensor) -> ssm_mla::Result<Vec<f32>> {
    let w = gpu.upload_f32(&[1, 1], &[1.0])?;
    let y = gpu.nan_f32(&[1, 1])?;
    let mut batch = gpu.batch();
    op.record_linear(&mut batch, x, &w, None, &y)?;
    batch.run()?;
    gpu.read_f32(&y)
}

#[test]
fn every_gpu_has_its_own_id() {
    let (a, b) = (new_gpu(), new_gpu());
    assert_ne!(a.id(), b.id());
    let t = a.upload_f32(&[1], &[1.0]).unwrap();
    assert_eq!(t.gpu_id(), a.id());
    assert_eq!(t.reshaped(&[1, 1]).unwrap().gpu_id(), a.id());
    assert!(a.expect_own("t", &t).is_ok());
    let e = b.expect_own("t", &t).unwrap_err();
    assert!(matches!(e, Error::ForeignTensor { .. }), "{e}");
    assert!(e.to_string().contains("`t`"), "{e}");
}

#[test]
fn an_op_refuses_a_tensor_of_another_gpu() {
    let (mine, other) = (new_gpu(), new_gpu());
    let op = Matmul::new(&mine).unwrap();
    let foreign_x = other.upload_f32(&[1, 1], &[7.0]).unwrap();
    let e = identity_product(&op, &mine, &foreign_x).unwrap_err();
    match &e {
        Error::ForeignTensor {
            tensor,
            tensor_gpu,
            gpu,
        } => {
            assert_eq!((*tensor_gpu, *gpu), (other.id(), mine.id()));
            assert!(
                tensor.contains("`x` (binding 1)"),
                "the binding is named: {e}"
            );
            assert!(tensor.contains("matmul"), "the kernel is named: {e}");
        }
        other => panic!("expected ForeignTensor, got {other:?}"),
    }
    assert!(e.to_string().contains("another GPU context"), "{e}");
    // The same data uploaded to the right context gives the right answer.
    let x = mine.upload_f32(&[1, 1], &[7.0]).unwrap();
    assert_eq!(identity_product(&op, &mine, &x).unwrap(), vec![7.0]);
    // An op built on one context and recorded into another's batch is refused too (wgpu
    // would panic on a pipeline of another device).
    let foreign_op = Matmul::new(&other).unwrap();
    let e = identity_product(&foreign_op, &mine, &x).unwrap_err();
    assert!(matches!(e, Error::ForeignKernel { .. }), "{e}");
    let copy = StreamCopy::new(&other).unwrap();
    let y = mine.nan_f32(&[1, 1]).unwrap();
    let mut batch = mine.batch();
    let e = copy.record(&mut batch, &x, &y).unwrap_err();
    assert!(e.to_string().contains("build the op with the Gpu"), "{e}");
    assert_eq!(batch.dispatches(), 0);
    batch.run().unwrap();
}

#[test]
fn host_transfers_and_copies_refuse_a_tensor_of_another_gpu() {
    let (mine, other) = (new_gpu(), new_gpu());
    let own = mine.upload_f32(&[2], &[1.0, 2.0]).unwrap();
    let foreign = other.upload_f32(&[2], &[3.0, 4.0]).unwrap();
    let is_foreign = |r: ssm_mla::Result<()>| match r {
        Err(Error::ForeignTensor { tensor, .. }) => tensor,
        other => panic!("expected ForeignTensor, got {other:?}"),
    };
    is_foreign(mine.read_f32(&foreign).map(|_| ()));
    is_foreign(mine.write(&foreign, &[5.0f32, 6.0]));
    let mut batch = mine.batch();
    is_foreign(batch.write(&foreign, 0, &[5.0f32]));
    let which = is_foreign(batch.copy(&foreign, 0, &own, 0, 8));
    assert!(which.contains("source"), "{which}");
    let which = is_foreign(batch.copy(&own, 0, &foreign, 0, 8));
    assert!(which.contains("destination"), "{which}");
    batch.run().unwrap();
    // Nothing was written anywhere.
    assert_eq!(mine.read_f32(&own).unwrap(), vec![1.0, 2.0]);
    assert_eq!(other.read_f32(&foreign).unwrap(), vec![3.0, 4.0]);
}

#[test]
fn host_element_type_must_match_the_dtype() {
    let gpu = gpu();
    let ids = gpu.upload_u32(&[3], &[1, 2, 3]).unwrap();
    let e = gpu.read_f32(&ids).unwrap_err();
    assert!(matches!(e, Error::DType { .. }), "{e}");
    assert!(
        e.to_string().contains("read_u32"),
        "says how to read it: {e}"
    );
    assert_eq!(gpu.read_u32(&ids).unwrap(), vec![1, 2, 3]);
    assert!(matches!(gpu.read_i32(&ids), Err(Error::DType { .. })));
    assert!(matches!(gpu.read::<f32>(&ids), Err(Error::DType { .. })));
    // Uploads and writes check the host type against the dtype.
    let e = gpu.upload(&[2], DType::U32, &[1.0f32, 2.0]).unwrap_err();
    assert!(matches!(e, Error::DType { .. }), "{e}");
    assert!(matches!(
        gpu.upload(&[2], DType::F32, &[1u32, 2]),
        Err(Error::DType { .. })
    ));
    assert!(matches!(
        gpu.write(&ids, &[1.0f32, 2.0, 3.0]),
        Err(Error::DType { .. })
    ));
    let mut batch = gpu.batch();
    assert!(matches!(
        batch.write(&ids, 0, &[-1i32]),
        Err(Error::DType { .. })
    ));
    batch.run().unwrap();
    assert_eq!(
        gpu.read_u32(&ids).unwrap(),
        vec![1, 2, 3],
        "nothing written"
    );
    // Each host type round-trips through its own dtype.
    let slots = gpu.upload_i32(&[2], &[-1, 5]).unwrap();
    assert_eq!(slots.dtype(), DType::I32);
    assert_eq!(gpu.read_i32(&slots).unwrap(), vec![-1, 5]);
    let u = gpu.upload(&[1], DType::U32, &[9u32]).unwrap();
    assert_eq!(gpu.read::<u32>(&u).unwrap(), vec![9]);
    // A wrong element count is refused before anything is allocated.
    assert!(matches!(
        gpu.upload(&[3], DType::F32, &[1.0f32]),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn copies_must_lie_within_both_tensors() {
    let gpu = gpu();
    let src = gpu.upload_f32(&[4], &[1.0, 2.0, 3.0, 4.0]).unwrap();
    let dst = gpu.upload_f32(&[2], &[-1.0, -2.0]).unwrap();
    let mut batch = gpu.batch();
    // 16 bytes into an 8-byte tensor (whose buffer is padded to 16: padding does not count).
    let e = batch.copy(&src, 0, &dst, 0, 16).unwrap_err();
    assert!(e.to_string().contains("destination"), "{e}");
    assert!(e.to_string().contains("holds 8 bytes"), "{e}");
    let e = batch.copy(&src, 12, &dst, 0, 8).unwrap_err();
    assert!(e.to_string().contains("source"), "{e}");
    assert!(batch.copy(&src, 2, &dst, 0, 4).is_err(), "unaligned offset");
    assert!(batch.copy(&src, 0, &dst, 0, 6).is_err(), "unaligned size");
    assert!(batch.copy(&src, 0, &src, 8, 8).is_err(), "one tensor");
    assert!(
        batch.copy(&src, u64::MAX - 3, &dst, 0, 8).is_err(),
        "overflow"
    );
    batch.run().unwrap();
    assert_eq!(
        gpu.read_f32(&dst).unwrap(),
        vec![-1.0, -2.0],
        "nothing copied"
    );
    // In range: the last two elements.
    let mut batch = gpu.batch();
    batch.copy(&src, 8, &dst, 0, 8).unwrap();
    batch.copy(&src, 0, &dst, 8, 0).unwrap(); // empty, at the end: fine
    batch.run().unwrap();
    assert_eq!(gpu.read_f32(&dst).unwrap(), vec![3.0, 4.0]);
}

#[test]
fn an_adopted_device_keeps_the_apps_error_handler() {
    let adapter = ssm_mla::runtime::adapter_from_env().expect("GPU tests need an adapter");
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))
            .expect("device");
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    device.on_uncaptured_error(Arc::new(move |_e: wgpu::Error| {
        count.fetch_add(1, Ordering::SeqCst);
    }));
    let gpu = Gpu::from_device(device.clone(), queue.clone());
    // The crate's own errors come back as errors and never reach the app's handler.
    let bad = Shader::external("test/not_wgsl", "this is not WGSL");
    assert!(matches!(gpu.kernel(&bad, &[]), Err(Error::Gpu { .. })));
    let ids = gpu.upload_u32(&[1], &[1]).unwrap();
    assert!(gpu.read_f32(&ids).is_err());
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "the crate's errors are its own"
    );
    // The app's own invalid copy: 16 bytes out of an 8-byte buffer.
    let buffer = |usage| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("app buffer"),
            size: 8,
            usage,
            mapped_at_creation: false,
        })
    };
    let src = buffer(wgpu::BufferUsages::COPY_SRC);
    let dst = buffer(wgpu::BufferUsages::COPY_DST);
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, 16);
    queue.submit([encoder.finish()]);
    gpu.wait().unwrap();
    assert!(
        seen.load(Ordering::SeqCst) >= 1,
        "the app's handler sees the app's error"
    );
    // The crate's next calls are unaffected by it.
    let seen_before = seen.load(Ordering::SeqCst);
    let t = gpu.upload_f32(&[2], &[3.0, 4.0]).unwrap();
    let u = stream_copy(&gpu, &t).unwrap();
    assert_eq!(gpu.read_f32(&u).unwrap(), vec![3.0, 4.0]);
    let op = StreamCopy::new(&gpu).unwrap();
    let mut batch = gpu.batch();
    op.record(&mut batch, &u, &t).unwrap();
    batch.run().unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), seen_before);
}

fn small_config() -> MlaConfig {
    let json = r#"{"hidden_size": 64, "num_attention_heads": 2, "q_lora_rank": null,
        "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
        "rope_theta": 10000, "rms_norm_eps": 1e-6, "attention_bias": false,
        "rope_scaling": null}"#;
    MlaConfig::from_json_str(json, "small").unwrap()
}

#[test]
fn a_full_latent_cache_is_its_own_error() {
    let gpu = gpu();
    let cfg = small_config();
    let weights = MlaWeights::random(&cfg, &mut Rng::new(1));
    let layer = MlaLayer::new(gpu.clone(), &cfg, &weights).unwrap();
    // One sequence of at most 4 tokens in pages of 2: 2 pages.
    let mut cache = layer.new_cache(1, 4, 2).unwrap();
    let x3 = gpu.upload_f32(&[1, 3, 64], &[0.1; 192]).unwrap();
    layer.forward(&mut cache, &[0], &x3).unwrap();
    let e = layer.forward(&mut cache, &[0], &x3).unwrap_err();
    match &e {
        Error::CacheFull {
            needed_blocks,
            free_blocks,
            num_blocks,
            block_size,
            ..
        } => assert_eq!(
            (*needed_blocks, *free_blocks, *num_blocks, *block_size),
            (1, 0, 2, 2)
        ),
        other => panic!("expected CacheFull, got {other:?}"),
    }
    let text = e.to_string();
    assert!(text.contains("latent cache is full"), "{text}");
    assert!(!text.contains("device limit"), "{text}");
    assert!(
        text.contains("sequence 0") && text.contains("3 tokens"),
        "{text}"
    );
    assert_eq!(cache.seq_len(0), 3, "the cache is unchanged");
    // One more token still fits the second page.
    let x1 = gpu.upload_f32(&[1, 1, 64], &[0.1; 64]).unwrap();
    layer.forward(&mut cache, &[0], &x1).unwrap();
    assert_eq!(cache.seq_len(0), 4);
}

#[test]
fn a_tensor_missing_in_memory_names_the_file_and_what_it_has() {
    let a = HostTensor::new(&[1], vec![1.0]).unwrap();
    let mut built = SafeTensors::default();
    built.insert("alpha", a.clone());
    built.insert("beta", a.clone());
    let e = built.get("gamma").unwrap_err().to_string();
    assert!(e.contains("`gamma`"), "{e}");
    assert!(e.contains("in the in-memory safetensors"), "{e}");
    assert!(e.contains("alpha, beta"), "{e}");
    assert!(!e.contains("in  ") && !e.ends_with("in "), "{e}");
    let bytes = to_safetensors_bytes(&[("alpha", &a)]).unwrap();
    let parsed = SafeTensors::from_bytes(&bytes, "").unwrap();
    let e = parsed.get("gamma").unwrap_err().to_string();
    assert!(e.contains("in-memory") && e.contains("alpha"), "{e}");
    let named = SafeTensors::from_bytes(&bytes, "weights.safetensors").unwrap();
    let e = named.get("gamma").unwrap_err().to_string();
    assert!(e.contains("in weights.safetensors"), "{e}");
    // Many tensors: a count and the first few, not all of them.
    let mut many = SafeTensors::default();
    for i in 0..40 {
        many.insert(&format!("t{i:02}"), a.clone());
    }
    let e = many.get("gamma").unwrap_err().to_string();
    assert!(e.contains("40 tensors") && e.contains("t00"), "{e}");
    assert!(!e.contains("t39"), "{e}");
    assert!(SafeTensors::default()
        .get("x")
        .unwrap_err()
        .to_string()
        .contains("no tensors"));
}
