//! Half storage in the runtime: f16 and bf16 tensors uploaded from f32 (rounded to nearest even)
//! or from raw u16 words, read back widened to f32 or as raw words; odd counts of halves and
//! size 1 (buffers are padded, copies move whole words); F16 and BF16 safetensors tensors loaded
//! as stored and uploaded as raw words. Exact comparisons: widening is exact.

mod common;
use common::*;
use ssm_mla::DType;

#[test]
fn halves_round_trip_from_f32_and_raw_words() {
    for (name, gpu) in gpus() {
        for dtype in [DType::F16, DType::BF16] {
            for n in [1usize, 2, 3, 7, 1001] {
                let data: Vec<f32> = (0..n).map(|i| (i as f32 - 3.3) * 0.377).collect();
                let t = gpu.upload_f32_as(&[n], dtype, &data).unwrap();
                assert_eq!(t.dtype(), dtype);
                assert_eq!(t.size_bytes(), 2 * n as u64);
                let back = gpu.read_f32(&t).unwrap();
                let want: Vec<f32> = data.iter().map(|&x| dtype.round_f32(x)).collect();
                assert_eq!(back, want, "{name} {dtype} n={n}");
                let words: Vec<u16> = gpu.read(&t).unwrap();
                let raw = gpu.upload(&[n], dtype, &words).unwrap();
                assert_eq!(
                    gpu.read_f32(&raw).unwrap(),
                    want,
                    "{name} {dtype} raw n={n}"
                );
                assert!(
                    gpu.read::<f32>(&t).is_err(),
                    "f32 elements of a half tensor"
                );
            }
        }
        // Round to nearest even at the halfway points.
        let bf = gpu
            .upload_f32_as(
                &[2],
                DType::BF16,
                &[f32::from_bits(0x3f80_8000), f32::from_bits(0x3f81_8000)],
            )
            .unwrap();
        let w: Vec<u16> = gpu.read(&bf).unwrap();
        assert_eq!(w, vec![0x3f80, 0x3f82], "{name}");
        assert!(gpu.upload_f32_as(&[1], DType::U32, &[1.0]).is_err());
    }
}

#[test]
fn safetensors_halves_load_as_stored_and_upload_raw_words() {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    use ssm_mla::io::SafeTensors;
    let vals: Vec<f32> = (0..7).map(|i| (i as f32 - 3.1) * 0.713).collect();
    let f16: Vec<u8> = vals
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_bits().to_le_bytes())
        .collect();
    let bf16: Vec<u8> = vals
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_bits().to_le_bytes())
        .collect();
    let i32s: Vec<u8> = [1i32, 2].iter().flat_map(|x| x.to_le_bytes()).collect();
    let bytes = safetensors::serialize(
        vec![
            ("h", TensorView::new(Dtype::F16, vec![7], &f16).unwrap()),
            ("b", TensorView::new(Dtype::BF16, vec![7], &bf16).unwrap()),
        ],
        None,
    )
    .unwrap();
    let st = SafeTensors::from_bytes(&bytes, "halves.safetensors").unwrap();
    for (name, gpu) in gpus() {
        for (t, dtype) in [("h", DType::F16), ("b", DType::BF16)] {
            let host = st.get(t).unwrap();
            assert_eq!(host.dtype(), dtype);
            let want: Vec<f32> = vals.iter().map(|&x| dtype.round_f32(x)).collect();
            assert_eq!(host.to_f32(), want.as_slice());
            let dev = host.upload(&gpu).unwrap();
            assert_eq!((dev.dtype(), dev.size_bytes()), (dtype, 14));
            assert_eq!(gpu.read_f32(&dev).unwrap(), want, "{name} {dtype}");
            let words: Vec<u16> = gpu.read(&dev).unwrap();
            assert_eq!(words.as_slice(), host.half_words().unwrap());
            // Widened on request; the other half type is the f32 view rounded.
            let wide = host.upload_as(&gpu, DType::F32).unwrap();
            assert_eq!(gpu.read_f32(&wide).unwrap(), want);
        }
    }
    let err = st.get("x").unwrap_err().to_string();
    assert!(
        err.contains("`x`") && err.contains("halves.safetensors"),
        "{err}"
    );
    // Integer tensors are token ids: they load as such, and asking for one as floats is a
    // dtype error naming it; a dtype that is neither is refused naming what is accepted.
    let ints = safetensors::serialize(
        vec![("i", TensorView::new(Dtype::I32, vec![2], &i32s).unwrap())],
        None,
    )
    .unwrap();
    let st = SafeTensors::from_bytes(&ints, "ints.safetensors").unwrap();
    assert_eq!(st.get_ids("i").unwrap().data, vec![1, 2]);
    let err = st.get("i").unwrap_err().to_string();
    assert!(err.contains("`i`"), "{err}");
    let bools = [1u8, 0];
    let bad = safetensors::serialize(
        vec![("b", TensorView::new(Dtype::BOOL, vec![2], &bools).unwrap())],
        None,
    )
    .unwrap();
    let err = SafeTensors::from_bytes(&bad, "bools.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`b`") && err.contains("BOOL") && err.contains("BF16"),
        "{err}"
    );
}
