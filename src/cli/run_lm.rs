//! `ssm-mla run lm --model DIR --input IN --output OUT [--decode-from P] [--cache-dtype
//! f32|f16|bf16] [--device gpu|cpu]`:
//! a whole language model from a Hugging Face directory (its `config.json` `model_type` picks
//! the architecture). IN holds `input_ids` (Bt, L) int32 or int64; OUT holds `logits`
//! (Bt, L, vocab) f32. All Bt sequences are fed in one ragged call; with `--decode-from P` the
//! first P tokens of each are prefilled together and the rest decoded one token per call, all
//! sequences at once, which must give the logits of the one-shot run.

use super::run_mla::Device as DeviceArg;
use ssm_mla::io::{write_safetensors, HostTensor, SafeTensors};
use ssm_mla::lm::{Device, LoadOptions, SeqInput};
use ssm_mla::models;
use ssm_mla::{Error, Gpu, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `run lm`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Hugging Face model directory (config.json + model.safetensors or a sharded index).
    #[arg(long)]
    pub model: PathBuf,
    /// Safetensors with `input_ids` (Bt, L), int32 or int64.
    #[arg(long)]
    pub input: PathBuf,
    /// Output safetensors (`logits`, (Bt, L, vocab) f32).
    #[arg(long)]
    pub output: PathBuf,
    /// Prefill this many tokens of every sequence, then decode the rest one at a time.
    #[arg(long)]
    pub decode_from: Option<usize>,
    /// Run on the GPU or the f64 CPU reference.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: DeviceArg,
    /// Storage of an attention model's GPU latent cache: f32, f16 or bf16.
    #[arg(long, default_value = "f32", value_parser = super::run_mla::parse_cache_dtype)]
    pub cache_dtype: ssm_mla::DType,
}

/// Open the device the arguments ask for.
pub fn device(arg: DeviceArg) -> Result<Device> {
    Ok(match arg {
        DeviceArg::Gpu => Device::Gpu(Arc::new(Gpu::new()?)),
        DeviceArg::Cpu => Device::Cpu,
    })
}

/// Run the command; bad input is an `Err` (exit code 2).
pub fn run(args: Args) -> Result<i32> {
    let file = SafeTensors::read(&args.input)?;
    let ids = file.get_ids("input_ids")?;
    let (bt, len) = match ids.shape[..] {
        [bt, len] if bt > 0 && len > 0 => (bt, len),
        _ => {
            return Err(Error::shape(
                "input_ids",
                "(Bt, L) with Bt, L ≥ 1",
                &ids.shape,
            ))
        }
    };
    if let Some(&bad) = ids.data.iter().find(|&&t| t < 0 || t > u32::MAX as i64) {
        return Err(Error::invalid(format!(
            "input_ids holds {bad}, not a token id"
        )));
    }
    let tokens: Vec<u32> = ids.data.iter().map(|&t| t as u32).collect();
    let split = args.decode_from.unwrap_or(len);
    if split == 0 || split > len {
        return Err(Error::invalid(format!(
            "--decode-from {split} must be in 1..={len} (the prompt length)"
        )));
    }
    let options = LoadOptions {
        slots: bt,
        context: Some(len),
        cache_dtype: args.cache_dtype,
        ..Default::default()
    };
    let mut model = models::load(&args.model, &device(args.device)?, &options)?;
    let vocab = model.vocab_size();
    let mut logits = vec![0.0f32; bt * len * vocab];
    let row = |b: usize| &tokens[b * len..(b + 1) * len];
    let prefill: Vec<SeqInput> = (0..bt)
        .map(|b| SeqInput {
            slot: b,
            tokens: &row(b)[..split],
        })
        .collect();
    for (b, out) in model.forward(&prefill, false)?.into_iter().enumerate() {
        logits[b * len * vocab..][..split * vocab].copy_from_slice(&out);
    }
    for t in split..len {
        let step: Vec<SeqInput> = (0..bt)
            .map(|b| SeqInput {
                slot: b,
                tokens: &row(b)[t..t + 1],
            })
            .collect();
        for (b, out) in model.forward(&step, false)?.into_iter().enumerate() {
            logits[(b * len + t) * vocab..][..vocab].copy_from_slice(&out);
        }
    }
    let out = HostTensor::new(&[bt, len, vocab], logits)?;
    write_safetensors(&args.output, &[("logits", &out)])?;
    Ok(0)
}
