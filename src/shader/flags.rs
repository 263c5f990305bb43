//! The flags a shader body is composed with.

use std::fmt;

/// A switch of the shader preprocessor, tested by `#if NAME` in WGSL. A flag is for what changes
/// a binding or a type; a new one (a storage dtype, say) is a new variant here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flag {
    /// Subgroup operations (`Features::SUBGROUP`): subgroup builtins and shuffles.
    Subgroup,
    /// Storage read and written as `vec4<f32>` (layouts aligned to 4 elements).
    Vec4,
    /// The kernel's first *stored* tensor role (matmul's `w`, the latent cache's `data`,
    /// attention's `cache`, rmsnorm's and rope's rows, state_update's activations) is f16; the
    /// rest stays f32 unless the second role's flags say otherwise. Without
    /// [`Flag::NativeF16`] the halves travel as pairs in `u32` words (`unpack2x16float`).
    F16,
    /// The stored tensor is bf16, pairs in `u32` words widened by shifts (on every adapter).
    Bf16,
    /// With [`Flag::F16`] on a device with `SHADER_F16`: the stored tensor is bound as native
    /// `f16` vectors; the composer puts `enable f16;` on the module's first line.
    NativeF16,
    /// A kernel's *second* stored role is f16 (`common/storage`'s `_b` accessors): for kernels
    /// where two tensor roles take their dtypes independently (rmsnorm's weight next to its
    /// rows, matmul's activations next to its weights, state_update's state next to its
    /// activations). Pairs in `u32` words without [`Flag::NativeF16B`].
    F16B,
    /// The second stored role is bf16 (pairs in `u32` words, widened by shifts).
    Bf16B,
    /// With [`Flag::F16B`] on a device with `SHADER_F16`: the second role is bound as native
    /// `f16`; the composer puts `enable f16;` on the module's first line.
    NativeF16B,
}

impl Flag {
    /// Every flag, in the order variant names list them.
    pub const ALL: [Flag; 8] = [
        Flag::Subgroup,
        Flag::Vec4,
        Flag::F16,
        Flag::Bf16,
        Flag::NativeF16,
        Flag::F16B,
        Flag::Bf16B,
        Flag::NativeF16B,
    ];

    /// The name `#if` uses.
    pub const fn name(self) -> &'static str {
        match self {
            Flag::Subgroup => "SUBGROUP",
            Flag::Vec4 => "VEC4",
            Flag::F16 => "F16",
            Flag::Bf16 => "BF16",
            Flag::NativeF16 => "NATIVE_F16",
            Flag::F16B => "F16_B",
            Flag::Bf16B => "BF16_B",
            Flag::NativeF16B => "NATIVE_F16_B",
        }
    }

    /// The flag `#if name` tests, if there is one.
    pub fn from_name(name: &str) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| f.name() == name)
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// A set of flags: the variant of a body. Order and repetition do not matter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flags(u32);

impl Flags {
    /// No flag: the body's plain variant.
    pub const NONE: Flags = Flags(0);

    /// The set of `flags`.
    pub const fn of(flags: &[Flag]) -> Flags {
        let mut bits = 0;
        let mut i = 0;
        while i < flags.len() {
            bits |= flags[i].bit();
            i += 1;
        }
        Flags(bits)
    }

    /// This set and `flag`.
    pub const fn with(self, flag: Flag) -> Flags {
        Flags(self.0 | flag.bit())
    }

    /// The flags of both sets.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// Whether `flag` is set.
    pub const fn contains(self, flag: Flag) -> bool {
        self.0 & flag.bit() != 0
    }

    /// The flags set, in [`Flag::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

/// `SUBGROUP+VEC4`; empty for no flags.
impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.iter().map(Flag::name).collect();
        f.write_str(&names.join("+"))
    }
}
