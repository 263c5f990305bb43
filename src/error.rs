//! The crate's one error type. Every fallible call returns [`Result`]; nothing on a public path
//! panics on bad input, and GPU validation errors are captured with error scopes and land here
//! instead of in wgpu's default (panicking) uncaptured-error handler.

use std::path::PathBuf;

/// What the fix is when no adapter can be found: a software Vulkan device.
pub const INSTALL_HINT: &str = "for a software Vulkan device install Mesa's lavapipe \
    (Debian/Ubuntu: `apt-get install -y mesa-vulkan-drivers libvulkan1`), or run `scripts/test`, \
    which installs it";

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter at all.
    #[error("no GPU adapter found ({detail}); {INSTALL_HINT}")]
    NoAdapter {
        /// What was tried.
        detail: String,
    },
    /// `WGPU_ADAPTER_NAME` named an adapter that is not present.
    #[error("no adapter name contains WGPU_ADAPTER_NAME={wanted:?}; available: {available}")]
    AdapterNotFound {
        /// The requested name (substring, case-insensitive).
        wanted: String,
        /// The names that were found.
        available: String,
    },
    /// The adapter refused to create a device.
    #[error("could not create a device on {adapter}: {message}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// wgpu's message.
        message: String,
    },
    /// A tensor has the wrong shape.
    #[error("tensor `{name}`: expected shape {expected}, got {got:?}")]
    Shape {
        /// Tensor name (as in safetensors files and the op docs).
        name: String,
        /// The expected shape, spelled with symbolic dimensions where useful.
        expected: String,
        /// The shape that was given.
        got: Vec<usize>,
    },
    /// Two tensors disagree on a size that both must share (read from one, checked on the
    /// other): both are named, with their shapes, the dimension and the two values.
    #[error(
        "tensors `{a}` {} and `{b}` {} disagree on {dim}: {a_value} vs {b_value}",
        spell(.a_shape),
        spell(.b_shape)
    )]
    Mismatch {
        /// The tensor the size was read from.
        a: String,
        /// Its shape.
        a_shape: Box<[usize]>,
        /// The tensor checked against it.
        b: String,
        /// Its shape.
        b_shape: Box<[usize]>,
        /// The shared dimension, spelled symbolically (e.g. `"N"`).
        dim: &'static str,
        /// The size in `a`.
        a_value: usize,
        /// The size in `b`.
        b_value: usize,
    },
    /// A tensor has the wrong element type.
    #[error("tensor `{name}`: expected dtype {expected}, got {got}")]
    DType {
        /// Tensor name.
        name: String,
        /// Expected dtype.
        expected: String,
        /// Given dtype.
        got: String,
    },
    /// A required tensor is absent.
    #[error("tensor `{name}` is missing{context}")]
    MissingTensor {
        /// Tensor name.
        name: String,
        /// Where it was looked for (may be empty).
        context: String,
    },
    /// An argument (not a tensor) is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The work does not fit a device limit and cannot be split.
    #[error("{what} exceeds a device limit: {detail}")]
    Limit {
        /// What is too large.
        what: String,
        /// The numbers involved.
        detail: String,
    },
    /// A tensor made by one [`crate::Gpu`] was handed to another. Tensors belong to the context
    /// that created them (its device, pools and caches), even when two contexts share an adapter.
    #[error(
        "{tensor} belongs to another GPU context (Gpu #{tensor_gpu}), not to the Gpu #{gpu} it was \
         passed to; upload the data with the Gpu that runs the work"
    )]
    ForeignTensor {
        /// Which tensor: an argument name, or a binding index and kernel label in a dispatch.
        tensor: String,
        /// Id of the context that created the tensor.
        tensor_gpu: u64,
        /// Id of the context it was passed to.
        gpu: u64,
    },
    /// An op (its compiled kernel) built on one [`crate::Gpu`] was recorded into a batch of
    /// another.
    #[error(
        "kernel `{kernel}` was built by another GPU context (Gpu #{kernel_gpu}), not by the Gpu \
         #{gpu} whose batch it was recorded into; build the op with the Gpu that runs the work"
    )]
    ForeignKernel {
        /// The kernel's label (shader, entry point, constants).
        kernel: String,
        /// Id of the context that built the kernel.
        kernel_gpu: u64,
        /// Id of the context whose batch it was recorded into.
        gpu: u64,
    },
    /// The latent KV cache has no free pages left for the tokens being appended.
    #[error(
        "the latent cache is full: {what} needs {needed_blocks} more pages of {block_size} tokens; \
         free pages: {free_blocks} of {num_blocks} ({} token slots in all)",
        num_blocks * block_size
    )]
    CacheFull {
        /// What was being appended (tokens and sequences).
        what: String,
        /// Pages (blocks) the append needs beyond those its sequences already hold.
        needed_blocks: usize,
        /// Pages still free.
        free_blocks: usize,
        /// Pages of the whole cache.
        num_blocks: usize,
        /// Tokens per page.
        block_size: usize,
    },
    /// wgpu reported a validation or internal error (captured by an error scope).
    #[error("GPU error in {context}: {message}")]
    Gpu {
        /// What the crate was doing.
        context: String,
        /// wgpu's message.
        message: String,
    },
    /// The GPU ran out of memory.
    #[error("GPU out of memory in {context}")]
    OutOfMemory {
        /// What the crate was doing.
        context: String,
    },
    /// The device was lost, a poll failed or a buffer could not be mapped.
    #[error("device failure in {context}: {message}")]
    Device {
        /// What the crate was doing.
        context: String,
        /// The underlying message.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid safetensors / JSON, or a config field is wrong.
    #[error("{path}: {message}")]
    Format {
        /// The file (or a description of the source).
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A shape error for tensor `name`, expected `expected` (free text such as `"(Bt, D, L)"`).
    pub fn shape(name: &str, expected: impl Into<String>, got: &[usize]) -> Self {
        Error::Shape {
            name: name.to_string(),
            expected: expected.into(),
            got: got.to_vec(),
        }
    }

    /// A mismatch error: tensors `a` (shape `a_shape`) and `b` (`b_shape`) disagree on `dim`,
    /// of size `a_value` in `a` and `b_value` in `b`.
    pub fn mismatch(
        a: &str,
        a_shape: &[usize],
        b: &str,
        b_shape: &[usize],
        dim: &'static str,
        a_value: usize,
        b_value: usize,
    ) -> Self {
        Error::Mismatch {
            a: a.to_string(),
            a_shape: a_shape.into(),
            b: b.to_string(),
            b_shape: b_shape.into(),
            dim,
            a_value,
            b_value,
        }
    }

    /// An invalid-argument error.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

/// A shape spelled as a tuple: `(4, 5)`, `(7)`, `()`.
fn spell(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("({})", dims.join(", "))
}
