//! A Hugging Face model directory: `config.json` and the weights, one `model.safetensors` or
//! shards listed by `model.safetensors.index.json` (its `weight_map`), read into one set of
//! named tensors in their stored dtypes. The config's `model_type` says which model to build.

use crate::error::{Error, Result};
use crate::io::{write_safetensors, HostTensor, SafeTensors};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A model directory read into memory.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The directory.
    pub dir: PathBuf,
    /// `config.json`, decoded.
    pub config: Value,
    /// Every tensor of the weight files, named as in them.
    pub tensors: SafeTensors,
}

fn format_err(path: &Path, message: impl Into<String>) -> Error {
    Error::Format {
        path: path.display().to_string(),
        message: message.into(),
    }
}

impl Checkpoint {
    /// Read `dir/config.json` and the weights (single file or sharded index).
    pub fn open(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| Error::Io {
            path: config_path.clone(),
            source,
        })?;
        let config: Value = crate::config_fields::parse_config_text(&text)
            .map_err(|e| format_err(&config_path, format!("not valid JSON: {e}")))?;
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let mut tensors = if single.exists() {
            SafeTensors::read(&single)?
        } else if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|source| Error::Io {
                path: index.clone(),
                source,
            })?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| format_err(&index, format!("not valid JSON: {e}")))?;
            let map = v
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| format_err(&index, "no `weight_map` object"))?;
            let mut files = BTreeSet::new();
            for (name, file) in map {
                let file = file.as_str().ok_or_else(|| {
                    format_err(&index, format!("`weight_map.{name}` is not a file name"))
                })?;
                if file.contains('/') || file.contains('\\') || file == ".." {
                    return Err(format_err(
                        &index,
                        format!("shard `{file}` is outside the directory"),
                    ));
                }
                files.insert(file.to_string());
            }
            let mut all = SafeTensors::default();
            for file in files {
                all.absorb(SafeTensors::read(&dir.join(file))?)?;
            }
            all
        } else {
            return Err(format_err(
                dir,
                "no model.safetensors or model.safetensors.index.json in the model directory",
            ));
        };
        tensors.set_origin(&dir.display().to_string());
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            tensors,
        })
    }

    /// The config's `model_type` (e.g. "mamba", "mamba2", "deepseek_v3").
    pub fn model_type(&self) -> Result<&str> {
        self.config
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| format_err(&self.dir.join("config.json"), "no `model_type` string"))
    }
}

/// Write a Hugging Face directory `dir` (created if missing): `config.json` and one
/// `model.safetensors` holding `tensors` under their names, which [`Checkpoint::open`] reads back.
pub fn write_dir(dir: &Path, config: &Value, tensors: &[(String, HostTensor)]) -> Result<()> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config.to_string()).map_err(io_err(&config_path))?;
    let refs: Vec<(&str, &HostTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    write_safetensors(&dir.join("model.safetensors"), &refs)
}
