//! Typed fields of a Hugging Face `config.json` object, with errors that name the file and the
//! field: shared by every model config the crate parses.

use crate::error::{Error, Result};
use serde_json::Value;

/// A format error for `path` (the config file, or a description of it).
pub(crate) fn format_err(path: &str, message: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_string(),
        message: message.into(),
    }
}

pub(crate) fn get_usize(
    obj: &serde_json::Map<String, Value>,
    src: &str,
    key: &str,
) -> Result<usize> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(format_err(src, format!("missing field `{key}`"))),
        Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| {
            format_err(
                src,
                format!("field `{key}` must be a non-negative integer, got {v}"),
            )
        }),
    }
}

pub(crate) fn get_f64(
    obj: &serde_json::Map<String, Value>,
    src: &str,
    key: &str,
    default: Option<f64>,
) -> Result<f64> {
    match obj.get(key) {
        None | Some(Value::Null) => {
            default.ok_or_else(|| format_err(src, format!("missing field `{key}`")))
        }
        Some(v) => v
            .as_f64()
            .ok_or_else(|| format_err(src, format!("field `{key}` must be a number, got {v}"))),
    }
}

pub(crate) fn get_bool(
    obj: &serde_json::Map<String, Value>,
    src: &str,
    key: &str,
    default: bool,
) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_bool().ok_or_else(|| {
            format_err(src, format!("field `{key}` must be true or false, got {v}"))
        }),
    }
}
