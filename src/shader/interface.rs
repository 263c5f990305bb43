//! The host↔shader contract of a kernel.

use crate::error::{Error, Result};

/// How a kernel uses a storage buffer (`var<storage, read>` or `var<storage, read_write>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// What an op passes a kernel, declared next to the op's `Uniforms` struct: `@binding(0)` is a
/// uniform block of `params` bytes, and storage buffers follow from `@binding(1)` in the order
/// of `bindings`, each named as the WGSL global it binds.
///
/// `tests/shader_contract.rs` reflects every registered variant's composed WGSL and checks it
/// keeps this declaration (uniform struct size rounded up to 16 bytes, then each binding's name,
/// address space and access by index); [`crate::Batch::dispatch`] checks every call against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelInterface {
    /// `size_of` the uniform block the op passes (a multiple of 16: WGSL rounds uniform structs
    /// up to 16 bytes, so a shorter Rust struct would leave the tail to chance).
    pub params: usize,
    /// The storage bindings from `@binding(1)`: WGSL name and access.
    pub bindings: &'static [(&'static str, Access)],
}

impl KernelInterface {
    /// `` `name` (binding i) `` for storage binding `i` (0-based, as the op passes them).
    pub fn describe_binding(&self, i: usize) -> String {
        match self.bindings.get(i) {
            Some((name, _)) => format!("`{name}` (binding {})", i + 1),
            None => format!("binding {}", i + 1),
        }
    }

    /// Check one dispatch of `kernel`: a parameter block of `params` bytes and `bindings`
    /// storage bindings must be what this interface declares.
    pub fn check_dispatch(&self, kernel: &str, params: usize, bindings: usize) -> Result<()> {
        if params != self.params {
            return Err(Error::invalid(format!(
                "{kernel}: a {params}-byte parameter block for a kernel declared with {} bytes",
                self.params
            )));
        }
        if bindings != self.bindings.len() {
            let names: Vec<_> = self.bindings.iter().map(|(n, _)| *n).collect();
            return Err(Error::invalid(format!(
                "{kernel}: {bindings} storage bindings for a kernel declared with {} ({})",
                self.bindings.len(),
                names.join(", ")
            )));
        }
        Ok(())
    }

    /// Every way a shader's reflected interface — uniform struct size already rounded up to 16
    /// (`None` when `@binding(0)` is not a uniform) and, by index from `@binding(1)`, each storage
    /// global's name and access — differs from this declaration. Empty when they agree.
    pub fn differences(&self, params: Option<usize>, bindings: &[(String, Access)]) -> Vec<String> {
        let mut out = Vec::new();
        match params {
            Some(p) if p == self.params => {}
            Some(p) => out.push(format!(
                "uniform block: the shader's is {p} bytes (rounded up to 16), the op's {}",
                self.params
            )),
            None => out.push("@binding(0) is not a uniform block".into()),
        }
        for i in 0..bindings.len().max(self.bindings.len()) {
            let at = i + 1;
            match (self.bindings.get(i), bindings.get(i)) {
                (Some((n, a)), Some((sn, sa))) if n == sn && a == sa => {}
                (Some((n, a)), Some((sn, sa))) => out.push(format!(
                    "@binding({at}): declared `{n}` {a:?}, the shader has `{sn}` {sa:?}"
                )),
                (Some((n, _)), None) => out.push(format!(
                    "@binding({at}): declared `{n}`, the shader has none"
                )),
                (None, Some((sn, _))) => out.push(format!(
                    "@binding({at}): the shader has `{sn}`, the op does not declare it"
                )),
                (None, None) => {}
            }
        }
        out
    }
}
