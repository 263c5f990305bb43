//! Any byte string given to the safetensors loader yields a value or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = ssm_mla::SafeTensors::from_bytes(data, "fuzz") {
        for name in file.names() {
            let t = file.get(name).expect("listed names are present");
            assert_eq!(t.shape.iter().product::<usize>(), t.data.len());
        }
    }
});
