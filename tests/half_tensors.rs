//! Half storage in the runtime: f16 and bf16 tensors uploaded from f32 (rounded to nearest even)
//! or from raw u16 words, read back widened to f32 or as raw words; odd counts of halves and
//! size 1 (buffers are padded, copies move whole words). Exact comparisons: widening is exact.

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
