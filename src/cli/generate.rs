//! `ssm-mla generate --model DIR --prompt TEXT [--max-new-tokens N] [--temperature T]
//! [--top-p P] [--seed S] [--device gpu|cpu]`: encode the prompt with the directory's
//! `tokenizer.json`, prefill it, then sample and decode one token at a time, printing text as it
//! comes; ends with the prefill and decode rates (tokens/s, wall clock including the host).

use super::run_lm::device;
use super::run_mla::Device as DeviceArg;
use ssm_mla::lm::{LoadOptions, Sampler, SeqInput};
use ssm_mla::models;
use ssm_mla::{Error, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Hugging Face model directory with config.json, the weights and tokenizer.json.
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt text.
    #[arg(long)]
    pub prompt: String,
    /// Tokens to generate at most (generation also stops at the end-of-sequence token).
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Nucleus sampling mass in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Random seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run on the GPU or the f64 CPU reference.
    #[arg(long, value_enum, default_value = "gpu")]
    pub device: DeviceArg,
    /// Storage of an attention model's GPU latent cache: f32, f16 or bf16.
    #[arg(long, default_value = "f32", value_parser = super::run_mla::parse_cache_dtype)]
    pub cache_dtype: ssm_mla::DType,
}

fn tokenizer_err(path: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Error::Format {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Run the command; bad input is an `Err` (exit code 2).
pub fn run(args: Args) -> Result<i32> {
    let mut sampler = Sampler::new(args.temperature, args.top_p, args.seed)?;
    let tok_path = args.model.join("tokenizer.json");
    if !tok_path.exists() {
        return Err(tokenizer_err(
            &tok_path,
            "no tokenizer.json in the model directory",
        ));
    }
    let tokenizer =
        tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| tokenizer_err(&tok_path, e))?;
    let prompt: Vec<u32> = tokenizer
        .encode(args.prompt.as_str(), false)
        .map_err(|e| tokenizer_err(&tok_path, e))?
        .get_ids()
        .to_vec();
    if prompt.is_empty() {
        return Err(Error::invalid("the prompt encodes to no tokens"));
    }
    let options = LoadOptions {
        slots: 1,
        context: Some(prompt.len() + args.max_new_tokens),
        cache_dtype: args.cache_dtype,
        ..Default::default()
    };
    let mut model = models::load(&args.model, &device(args.device)?, &options)?;
    let eos = model.eos_token_id();
    let decode = |ids: &[u32]| {
        tokenizer
            .decode(ids, true)
            .map_err(|e| tokenizer_err(&tok_path, e))
    };
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", args.prompt);
    let _ = out.flush();

    let start = Instant::now();
    let logits = model.forward(
        &[SeqInput {
            slot: 0,
            tokens: &prompt,
        }],
        true,
    )?;
    let prefill_s = start.elapsed().as_secs_f64();
    let mut next = sampler.sample(&logits[0])?;
    let mut generated: Vec<u32> = Vec::new();
    let mut printed = String::new();
    let start = Instant::now();
    let mut decoded_tokens = 0usize;
    while generated.len() < args.max_new_tokens && Some(next) != eos {
        generated.push(next);
        let text = decode(&generated)?;
        if let Some(new) = text.strip_prefix(printed.as_str()) {
            let sep = if printed.is_empty() && !new.starts_with(' ') {
                " "
            } else {
                ""
            };
            let _ = write!(out, "{sep}{new}");
            let _ = out.flush();
            printed = text;
        }
        if generated.len() == args.max_new_tokens {
            break;
        }
        let logits = model.forward(
            &[SeqInput {
                slot: 0,
                tokens: &[next],
            }],
            true,
        )?;
        decoded_tokens += 1;
        next = sampler.sample(&logits[0])?;
    }
    let decode_s = start.elapsed().as_secs_f64();
    let _ = writeln!(out);
    let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let _ = writeln!(
        out,
        "prefill: {} tokens in {:.1} ms ({:.1} tokens/s); decode: {} tokens in {:.1} ms ({:.1} tokens/s)",
        prompt.len(),
        prefill_s * 1e3,
        rate(prompt.len(), prefill_s),
        decoded_tokens,
        decode_s * 1e3,
        rate(decoded_tokens, decode_s),
    );
    Ok(0)
}
