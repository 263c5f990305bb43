//! The host↔shader contract: for every variant in the registry (`ssm_mla::shaders::ALL`), the
//! composed WGSL must declare exactly the interface its op declares next to its `Uniforms`
//! struct ([`KernelInterface`]): at `@binding(0)` a uniform struct whose size, rounded up to 16
//! bytes as the runtime pads parameter blocks, is `size_of::<Uniforms>()`; from `@binding(1)`,
//! storage buffers with the declared names and access, in the declared order, each used by the
//! entry point (wgpu derives the layout from the shader, and it leaves out unused bindings).

use naga::valid::{Capabilities, ValidationFlags, Validator};
use naga::{AddressSpace, StorageAccess};
use ssm_mla::{Access, KernelInterface, Variant};

/// Every way `wgsl`'s interface differs from `declared` (empty when they agree).
fn contract_violations(wgsl: &str, declared: &KernelInterface) -> Result<Vec<String>, String> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| e.emit_to_string(wgsl))?;
    let info = Validator::new(
        ValidationFlags::all(),
        Capabilities::SUBGROUP
            | Capabilities::SHADER_FLOAT16
            | Capabilities::SHADER_FLOAT16_IN_FLOAT32,
    )
    .validate(&module)
    .map_err(|e| format!("validation: {e:?}"))?;
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| format!("layout: {e:?}"))?;
    let (entry_index, _) = module
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == "main")
        .ok_or("no entry point `main`")?;
    let uses = info.get_entry_point(entry_index);

    let mut problems = Vec::new();
    let mut params = None;
    let mut storage: Vec<Option<(String, Access)>> = Vec::new();
    for (handle, global) in module.global_variables.iter() {
        let Some(binding) = &global.binding else {
            continue;
        };
        let name = global.name.clone().unwrap_or_default();
        if binding.group != 0 {
            problems.push(format!("`{name}` is in bind group {}", binding.group));
            continue;
        }
        if uses[handle].is_empty() {
            problems.push(format!(
                "@binding({}) `{name}` is not used by `main`",
                binding.binding
            ));
        }
        match (binding.binding, global.space) {
            (0, AddressSpace::Uniform) => {
                params = Some((layouter[global.ty].size as usize).div_ceil(16) * 16);
            }
            (0, space) => problems.push(format!("@binding(0) `{name}` is {space:?}")),
            (i, AddressSpace::Storage { access }) => {
                let access = if access.contains(StorageAccess::STORE) {
                    Access::ReadWrite
                } else {
                    Access::Read
                };
                let i = i as usize - 1;
                if storage.len() <= i {
                    storage.resize(i + 1, None);
                }
                storage[i] = Some((name, access));
            }
            (i, space) => problems.push(format!("@binding({i}) `{name}` is {space:?}")),
        }
    }
    let mut bindings = Vec::new();
    for (i, b) in storage.into_iter().enumerate() {
        match b {
            Some(b) => bindings.push(b),
            None => {
                problems.push(format!("@binding({}) is missing", i + 1));
                bindings.push((String::new(), Access::Read));
            }
        }
    }
    problems.extend(declared.differences(params, &bindings));
    Ok(problems)
}

fn check(variant: &Variant, declared: &KernelInterface) -> Vec<String> {
    let problems = match variant.compose() {
        Ok(wgsl) => contract_violations(&wgsl, declared).unwrap_or_else(|e| vec![e]),
        Err(e) => vec![e.to_string()],
    };
    problems
        .into_iter()
        .map(|p| format!("{variant}: {p}"))
        .collect()
}

#[test]
fn every_variant_keeps_its_declared_interface() {
    let problems: Vec<String> = ssm_mla::shaders::ALL
        .iter()
        .flat_map(|v| check(v, &v.interface))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_declared_parameter_block_is_padded_to_16_bytes() {
    for v in ssm_mla::shaders::ALL {
        assert_eq!(v.interface.params % 16, 0, "{v}");
    }
}

/// The same check must catch a declaration that drifted from the shader in any way.
#[test]
fn a_drifted_declaration_is_caught() {
    let variant = ssm_mla::ops::matmul::VEC4;
    let good = variant.interface;
    assert_eq!(check(&variant, &good), Vec::<String>::new());
    const R: Access = Access::Read;
    const RW: Access = Access::ReadWrite;
    let with = |bindings| KernelInterface { bindings, ..good };
    let drifted = [
        KernelInterface {
            params: good.params + 16,
            ..good
        },
        KernelInterface {
            params: good.params - 16,
            ..good
        },
        with(&[("x", R), ("w", R), ("bias", RW), ("y", RW)]), // an access
        with(&[("w", R), ("x", R), ("bias", R), ("y", RW)]),  // the order
        with(&[("x", R), ("w", R), ("y", RW)]),               // a binding too few
        with(&[("x", R), ("w", R), ("bias", R), ("y", RW), ("z", R)]), // one too many
    ];
    for declared in drifted {
        let problems = check(&variant, &declared);
        assert!(!problems.is_empty(), "{declared:?} was not caught");
        assert!(
            problems[0].starts_with("mla/matmul[VEC4]: "),
            "{problems:?}"
        );
    }
    // A shader whose uniform block or bindings drifted is caught the same way.
    let wgsl = variant.compose().unwrap();
    let grown = wgsl.replace(
        "    _pad1: u32,\n",
        "    _pad1: u32,\n    extra: vec4<u32>,\n",
    );
    assert_ne!(grown, wgsl);
    assert!(!contract_violations(&grown, &good).unwrap().is_empty());
    let rebound = wgsl.replace("@binding(3)", "@binding(5)");
    assert!(!contract_violations(&rebound, &good).unwrap().is_empty());
}

/// `Batch::dispatch` refuses a call that breaks the kernel's declaration, naming the kernel, and
/// records nothing.
#[test]
fn dispatch_checks_calls_against_the_declaration() {
    let gpu = ssm_mla::Gpu::new().expect("GPU tests need an adapter");
    let kernel = gpu
        .kernel(
            &ssm_mla::ops::stream_copy::KERNEL,
            &[("WG", 64.0), ("PER_THREAD", 1.0)],
        )
        .unwrap();
    let t = gpu.upload_f32(&[4], &[0.0; 4]).unwrap();
    let mut batch = gpu.batch();
    let err = batch
        .dispatch(&kernel, &[0u32; 8], &[(&t).into(), (&t).into()], 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("common/stream_copy") && err.contains("32-byte"),
        "{err}"
    );
    let err = batch
        .dispatch(&kernel, &[0u32; 4], &[(&t).into()], 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("(src, dst)"), "{err}");
    assert_eq!(batch.dispatches(), 0);
    batch
        .dispatch(&kernel, &[1u32, 0, 0, 0], &[(&t).into(), (&t).into()], 1)
        .unwrap();
    assert_eq!(batch.dispatches(), 1);
}

/// One pipeline per (body, flags, entry, constants): the same variant twice is one pipeline, the
/// same body with other flags another.
#[test]
fn variants_are_cached_by_their_flags() {
    use ssm_mla::ops::rmsnorm::{SCALAR, VEC4};
    let gpu = ssm_mla::Gpu::new().expect("GPU tests need an adapter");
    let before = gpu.cached_pipelines();
    let a = gpu.kernel(&VEC4, &[("WG", 64.0)]).unwrap();
    let b = gpu.kernel(&VEC4, &[("WG", 64.0)]).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    let c = gpu.kernel(&SCALAR, &[("WG", 64.0)]).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&a, &c));
    assert_eq!(gpu.cached_pipelines(), before + 2);
    assert!(a.label.contains("mla/rmsnorm[VEC4]"), "{}", a.label);
    assert_eq!(c.interface, Some(SCALAR.interface));
}
