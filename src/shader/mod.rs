//! Shader bodies, the variants composed from them, and the contract each kernel keeps with its op.
//!
//! A *body* is one WGSL file under `shaders/<group>/`. A *variant* is a body composed with a set
//! of [`Flag`]s by a line-based preprocessor that knows four directives, each alone on its line:
//!
//! - `#if FLAG` (or `#if !FLAG`, or `#if A || B` for "any of") / `#else` / `#endif` keep the
//!   lines of the branch the flag selects (nesting allowed);
//! - `#include "group/name"` pulls in a fragment, `shaders/group/name.wgsl` (registered in
//!   [`FRAGMENTS`]), composed with the same flags. A fragment lands once per
//!   variant however often it is included, so fragments may include each other.
//!
//! A flag is for what changes a binding or a type (subgroup builtins, vec4 element types, a
//! storage dtype); anything else is a WGSL `override` constant, which specialises a pipeline
//! without composing another module. An unknown flag, an unbalanced `#if`, an unknown fragment, or
//! a variant flag its body never tests is an error ([`crate::Error::Format`]).
//!
//! Storage dtypes: a kernel has at most two stored roles whose dtype is chosen per call (matmul's
//! weights and its activations, say). [`Flag::F16`] or [`Flag::Bf16`] selects the first role's
//! dtype and [`Flag::NativeF16`] (with `F16`, on a device with `SHADER_F16`) binds it as native
//! `f16`; [`Flag::F16B`], [`Flag::Bf16B`] and [`Flag::NativeF16B`] do the same for the second
//! role. The bodies never spell the storage types: they include the one fragment
//! `common/storage`, which defines them and their load/store helpers for the three dtypes
//! (`sword`/`sget`/… for the first role, `sword_b`/`sget_b`/… for the second). A variant with
//! `NATIVE_F16` or `NATIVE_F16_B` gets `enable f16;` as its first line.
//!
//! Every variant declares its [`KernelInterface`]: the size of the op's uniform block and the
//! storage bindings the op passes, by name and access. `tests/shader_contract.rs` checks each
//! declaration against the composed WGSL; [`crate::Batch::dispatch`] checks each call against it.

mod flags;
mod interface;

pub use flags::{Flag, Flags};
pub use interface::{Access, KernelInterface};

use crate::error::{Error, Result};
use std::fmt;

/// A WGSL shader body (or fragment): one of the crate's own, embedded from `shaders/`, or an
/// app's ([`Shader::external`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shader {
    /// Path under `shaders/` without the extension, e.g. `"ssm/selective_scan"`.
    pub name: &'static str,
    /// The WGSL text, directives included.
    pub source: &'static str,
    /// Whether this is a body of the crate's `shaders/` (made by `wgsl!`). Only those are built
    /// without wgpu's loop bounding: their loops are known to end (`tests/shader_loops.rs`).
    pub(crate) embedded: bool,
}

/// The [`Shader`] of `shaders/<name>.wgsl`, embedded at build time.
macro_rules! wgsl {
    ($name:literal) => {
        $crate::shader::Shader {
            name: $name,
            source: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/shaders/",
                $name,
                ".wgsl"
            )),
            embedded: true,
        }
    };
}
pub(crate) use wgsl;

/// The fragments bodies pull in with `#include "name"`.
pub const FRAGMENTS: &[Shader] = &[
    wgsl!("common/divide"),
    wgsl!("common/elementwise"),
    wgsl!("common/grid"),
    wgsl!("common/storage"),
    wgsl!("common/trig"),
    wgsl!("ssm/softplus"),
    wgsl!("ssm/selective_scan_io"),
    wgsl!("ssm/discretise"),
    wgsl!("ssm/ssd_io"),
    wgsl!("ssm/ssd_tile"),
];

/// The text of fragment `name` (a path under `shaders/` without the extension).
pub fn fragment(name: &str) -> Option<&'static str> {
    FRAGMENTS.iter().find(|f| f.name == name).map(|f| f.source)
}

impl Shader {
    /// A body from outside the crate (an app's own kernel, say). The runtime builds it with all
    /// of wgpu's runtime checks, loop bounding included.
    pub const fn external(name: &'static str, source: &'static str) -> Shader {
        Shader {
            name,
            source,
            embedded: false,
        }
    }

    /// This body composed with `flags`, promising the host interface `interface`.
    pub const fn variant(self, flags: Flags, interface: KernelInterface) -> Variant {
        Variant {
            shader: self,
            flags,
            interface,
        }
    }

    /// `mla/matmul`, or with flags `mla/matmul[VEC4]`: how labels and errors name a variant.
    pub fn label(&self, flags: Flags) -> String {
        match flags {
            Flags::NONE => self.name.to_string(),
            flags => format!("{}[{flags}]", self.name),
        }
    }

    /// The WGSL of this body composed with `flags`, fragments from [`fragment`].
    pub fn compose(&self, flags: Flags) -> Result<String> {
        compose(self, flags, &fragment)
    }
}

/// A body, the flags it is composed with, and the interface its kernels keep with the op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    /// The body.
    pub shader: Shader,
    /// Its flags.
    pub flags: Flags,
    /// What the op passes it.
    pub interface: KernelInterface,
}

impl Variant {
    /// The composed WGSL.
    pub fn compose(&self) -> Result<String> {
        self.shader.compose(self.flags)
    }
}

/// [`Shader::label`].
impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shader.label(self.flags))
    }
}

/// Compose `shader` with `flags`, resolving `#include "name"` with `fragment`.
pub fn compose(
    shader: &Shader,
    flags: Flags,
    fragment: &dyn Fn(&str) -> Option<&'static str>,
) -> Result<String> {
    let mut out = String::with_capacity(shader.source.len() + 16);
    if flags.contains(Flag::NativeF16) || flags.contains(Flag::NativeF16B) {
        // WGSL wants enable directives before any declaration.
        out.push_str("enable f16;\n");
    }
    let mut c = Composer {
        flags,
        fragment,
        tested: Flags::NONE,
        included: Vec::new(),
        out,
    };
    c.expand(shader.name, shader.source, 0)?;
    if let Some(flag) = flags.iter().find(|f| !c.tested.contains(*f)) {
        return Err(error(
            shader.name,
            0,
            format!("never tests {}", flag.name()),
        ));
    }
    Ok(c.out)
}

struct Composer<'f> {
    flags: Flags,
    fragment: &'f dyn Fn(&str) -> Option<&'static str>,
    tested: Flags,
    included: Vec<String>,
    out: String,
}

/// One open `#if`: whether its current branch is kept, and whether `#else` was seen.
struct Branch {
    keep: bool,
    in_else: bool,
}

impl Composer<'_> {
    fn expand(&mut self, name: &str, source: &str, depth: usize) -> Result<()> {
        let mut open: Vec<Branch> = Vec::new();
        for (i, line) in source.lines().enumerate() {
            let keep = open.iter().all(|b| b.keep);
            let Some(directive) = line.trim().strip_prefix('#') else {
                if keep {
                    self.out.push_str(line);
                    self.out.push('\n');
                }
                continue;
            };
            let fail = |message: String| Err(error(name, i + 1, message));
            let (word, arg) = directive.split_once(' ').unwrap_or((directive, ""));
            let arg = arg.trim();
            match word {
                "if" if arg.contains("||") => {
                    let mut any = false;
                    for name in arg.split("||").map(str::trim) {
                        let Some(flag) = Flag::from_name(name) else {
                            return fail(format!("unknown flag {name:?} in #if {arg}"));
                        };
                        self.tested = self.tested.with(flag);
                        any |= self.flags.contains(flag);
                    }
                    open.push(Branch {
                        keep: any,
                        in_else: false,
                    });
                }
                "if" => {
                    let (negate, flag) = match arg.strip_prefix('!') {
                        Some(flag) => (true, flag),
                        None => (false, arg),
                    };
                    let Some(flag) = Flag::from_name(flag) else {
                        return fail(format!("unknown flag {arg:?}"));
                    };
                    self.tested = self.tested.with(flag);
                    open.push(Branch {
                        keep: self.flags.contains(flag) != negate,
                        in_else: false,
                    });
                }
                "else" | "endif" if !arg.is_empty() => return fail(format!("#{word} {arg}")),
                "else" => match open.last_mut() {
                    Some(b) if !b.in_else => {
                        b.keep = !b.keep;
                        b.in_else = true;
                    }
                    _ => return fail("#else without an open #if, or a second #else".into()),
                },
                "endif" => {
                    if open.pop().is_none() {
                        return fail("#endif without an open #if".into());
                    }
                }
                "include" => {
                    let Some(target) = arg.strip_prefix('"').and_then(|a| a.strip_suffix('"'))
                    else {
                        return fail(format!("#include wants a quoted name, got {arg}"));
                    };
                    let Some(text) = (self.fragment)(target) else {
                        return fail(format!("unknown fragment {target:?}"));
                    };
                    if depth >= 8 {
                        return fail(format!("#include {target:?} nested too deeply"));
                    }
                    if keep && !self.included.iter().any(|n| n == target) {
                        self.included.push(target.to_string());
                        self.expand(target, text, depth + 1)?;
                    }
                }
                _ => return fail(format!("unknown directive #{word}")),
            }
        }
        if !open.is_empty() {
            return Err(error(name, 0, format!("{} #if without #endif", open.len())));
        }
        Ok(())
    }
}

fn error(name: &str, line: usize, message: String) -> Error {
    let at = if line > 0 {
        format!(":{line}")
    } else {
        String::new()
    };
    Error::Format {
        path: format!("shaders/{name}.wgsl{at}"),
        message,
    }
}

#[cfg(test)]
mod tests;
