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

/// Decode a `config.json` text. Python's `json` writes infinite and NaN floats as the bare
/// tokens `Infinity`, `-Infinity` and `NaN` (older transformers did so for Mamba-2's
/// `time_step_limit`), which JSON does not allow; when the strict parse fails, those tokens
/// outside strings are rewritten as transformers' current tagged form
/// (`{"__float__": "Infinity"}`) and the text is parsed again. The strict parse's error is
/// returned when that does not help.
pub(crate) fn parse_config_text(text: &str) -> serde_json::Result<Value> {
    let strict = match serde_json::from_str(text) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let mut out = String::with_capacity(text.len() + 64);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(ch) = rest.chars().next() {
        if in_string {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if ch == '"' {
            in_string = true;
        } else {
            let token = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t));
            if let Some(t) = token {
                out.push_str(&format!("{{\"__float__\": \"{t}\"}}"));
                rest = &rest[t.len()..];
                continue;
            }
        }
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    serde_json::from_str(&out).map_err(|_| strict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_python_floats_are_read_as_tagged_ones() {
        let v = parse_config_text(r#"{"a": [0.0, Infinity], "b": "Infinity", "c": -Infinity}"#)
            .unwrap();
        assert_eq!(v["a"][1]["__float__"], "Infinity");
        assert_eq!(v["b"], "Infinity");
        assert_eq!(v["c"]["__float__"], "-Infinity");
        assert!(parse_config_text("{\"a\": 1,}").is_err());
    }
}
