//! `ssm-mla run mla --config CONFIG.json --weights W --input IN --output OUT [--decode-from P]
//! [--device gpu|cpu] [--cache-dtype f32|f16|bf16]`: one DeepSeek MLA layer over hidden_states
//! (Bt, S, hidden) from position 0; OUT holds `out` (Bt, S, hidden). With `--decode-from P` the
//! first P tokens are prefilled and the rest fed one at a time through the latent cache. The
//! weights' projection matrices stay in their file dtype on the GPU; `--cache-dtype` picks the
//! GPU latent cache's storage (the CPU reference keeps its cache in f64).

use ssm_mla::io::{write_safetensors, HostTensor, SafeTensors};
use ssm_mla::mla::{MlaConfig, MlaLayer, MlaWeights};
use ssm_mla::reference::mla::MlaCpuLayer;
use ssm_mla::{DType, Error, Gpu, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the layer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// The default GPU adapter.
    Gpu,
    /// The f64 CPU reference (absorbed form with a latent cache).
    Cpu,
}

/// Arguments of `run mla`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Hugging Face DeepSeek-V2/V3 config.json.
    #[arg(long)]
    pub config: PathBuf,
    /// Safetensors with the layer's weights (Hugging Face names, optionally prefixed with
    /// `model.layers.<i>.self_attn.`).
    #[arg(long)]
    pub weights: PathBuf,
    /// Which layer, when the weights file holds several.
    #[arg(long)]
    pub layer: Option<usize>,
    /// Safetensors with `hidden_states` (Bt, S, hidden).
    #[arg(long)]
    pub input: PathBuf,
    /// Output safetensors (`out`, (Bt, S, hidden)).
    #[arg(long)]
    pub output: PathBuf,
    /// Prefill this many tokens, then decode the rest one at a time.
    #[arg(long)]
    pub decode_from: Option<usize>,
    /// Run on the GPU or the CPU reference.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: Device,
    /// Storage of the GPU latent cache: f32, f16 or bf16 (half the bytes per token).
    #[arg(long, default_value = "f32", value_parser = parse_cache_dtype)]
    pub cache_dtype: DType,
}

/// Parse `--cache-dtype`.
pub fn parse_cache_dtype(s: &str) -> std::result::Result<DType, String> {
    DType::parse_float(s).ok_or_else(|| format!("expected f32, f16 or bf16, got `{s}`"))
}

/// Run the command; bad input is an `Err` (exit code 2).
pub fn run(args: Args) -> Result<i32> {
    let cfg = MlaConfig::from_file(&args.config)?;
    let weights =
        MlaWeights::from_safetensors(&SafeTensors::read(&args.weights)?, &cfg, args.layer)?;
    let input = SafeTensors::read(&args.input)?;
    let hidden = input.get("hidden_states")?;
    let shape = &hidden.shape;
    if shape.len() != 3 || shape[2] != cfg.hidden_size || shape[0] == 0 || shape[1] == 0 {
        return Err(Error::shape(
            "hidden_states",
            format!(
                "(Bt, S, hidden) with Bt, S ≥ 1 and hidden = {}",
                cfg.hidden_size
            ),
            shape,
        ));
    }
    let (bt, s) = (shape[0], shape[1]);
    let out = match args.device {
        Device::Gpu => {
            let gpu = Arc::new(Gpu::new()?);
            MlaLayer::new(gpu, &cfg, &weights)?.run_host_with_cache_dtype(
                &hidden.data,
                bt,
                s,
                args.decode_from,
                args.cache_dtype,
            )?
        }
        Device::Cpu => {
            MlaCpuLayer::run_host(&cfg, &weights, &hidden.data, bt, s, args.decode_from)?
        }
    };
    let out = HostTensor::new(&[bt, s, cfg.hidden_size], out)?;
    write_safetensors(&args.output, &[("out", &out)])?;
    Ok(0)
}
