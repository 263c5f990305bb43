//! Every shader variant the ops build (the registry, `ssm_mla::shaders::ALL`: each body composed
//! with each of its flag sets) must parse and validate with naga and translate to SPIR-V 1.3
//! (Vulkan), MSL 2.4 (Metal) and HLSL SM 6.2 (DX12). `override` constants are resolved with their
//! defaults first, so every override must have one. If `spirv-val` is installed the SPIR-V is
//! also checked by it. The test also walks `shaders/`, so that every `.wgsl` file there is a
//! registered body or fragment and matches what the crate embedded.

mod common;
use common::wgsl_files;
use naga::back::pipeline_constants::process_overrides;
use naga::valid::{Capabilities, ValidationFlags, Validator};
use ssm_mla::shaders::{ALL, FRAGMENTS};
use std::collections::BTreeSet;
use std::path::Path;

fn validator() -> Validator {
    Validator::new(
        ValidationFlags::all(),
        Capabilities::SUBGROUP
            | Capabilities::SHADER_FLOAT16
            | Capabilities::SHADER_FLOAT16_IN_FLOAT32,
    )
}

fn check(variant: &ssm_mla::Variant) -> Result<(), String> {
    let src = variant.compose().map_err(|e| e.to_string())?;
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
    let info = validator()
        .validate(&module)
        .map_err(|e| format!("validation: {e:?}"))?;
    let entries: Vec<String> = module.entry_points.iter().map(|e| e.name.clone()).collect();
    if entries.is_empty() {
        return Err("no entry point".into());
    }
    for entry in &entries {
        let (module, info) = process_overrides(
            &module,
            &info,
            Some((naga::ShaderStage::Compute, entry)),
            &Default::default(),
        )
        .map_err(|e| format!("overrides of {entry} (each override needs a default): {e:?}"))?;

        let spv_options = naga::back::spv::Options {
            lang_version: (1, 3),
            ..Default::default()
        };
        let pipeline = naga::back::spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: entry.clone(),
        };
        let words = naga::back::spv::write_vec(&module, &info, &spv_options, Some(&pipeline))
            .map_err(|e| format!("SPIR-V of {entry}: {e:?}"))?;
        spirv_val(&variant.to_string(), entry, &words)?;

        let msl_options = naga::back::msl::Options {
            lang_version: (2, 4),
            ..Default::default()
        };
        let msl_pipeline = naga::back::msl::PipelineOptions {
            entry_point: Some((naga::ShaderStage::Compute, entry.clone())),
            ..Default::default()
        };
        naga::back::msl::write_string(&module, &info, &msl_options, &msl_pipeline)
            .map_err(|e| format!("MSL of {entry}: {e:?}"))?;

        let hlsl_options = naga::back::hlsl::Options {
            shader_model: naga::back::hlsl::ShaderModel::V6_2,
            ..Default::default()
        };
        let mut hlsl = String::new();
        let hlsl_pipeline = naga::back::hlsl::PipelineOptions {
            entry_point: Some((naga::ShaderStage::Compute, entry.clone())),
        };
        naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline)
            .write(&module, &info, None)
            .map_err(|e| format!("HLSL of {entry}: {e:?}"))?;
    }
    Ok(())
}

fn spirv_val(variant: &str, entry: &str, words: &[u32]) -> Result<(), String> {
    let Ok(status) = std::process::Command::new("spirv-val")
        .arg("--version")
        .output()
    else {
        return Ok(()); // optional extra check; naga's own writer already validated the IR
    };
    if !status.status.success() {
        return Ok(());
    }
    let file = std::env::temp_dir().join(format!(
        "ssm-mla-{}-{}-{entry}.spv",
        std::process::id(),
        variant.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    std::fs::write(&file, bytemuck::cast_slice::<u32, u8>(words)).unwrap();
    let out = std::process::Command::new("spirv-val")
        .args(["--target-env", "vulkan1.1"])
        .arg(&file)
        .output()
        .map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&file);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "spirv-val of {entry}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn every_variant_ports_to_vulkan_metal_and_dx12() {
    let failures: Vec<String> = ALL
        .iter()
        .filter_map(|v| check(v).err().map(|e| format!("{v}: {e}")))
        .collect();
    eprintln!("checked {} variants", ALL.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_file_under_shaders_is_a_registered_body_or_fragment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files = Vec::new();
    wgsl_files(&root, &mut files);
    assert!(
        !files.is_empty(),
        "no shaders found under {}",
        root.display()
    );
    let bodies: Vec<ssm_mla::Shader> = ALL.iter().map(|v| v.shader).collect();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let name = file
            .strip_prefix(&root)
            .unwrap()
            .with_extension("")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(file).unwrap();
        let embedded = bodies.iter().chain(FRAGMENTS).find(|s| s.name == name);
        match embedded {
            None => problems.push(format!(
                "{}: neither a body of a variant in ssm_mla::shaders::ALL nor a fragment in FRAGMENTS",
                file.display()
            )),
            Some(s) if s.source != text => problems.push(format!("{name}: the embedded text is stale")),
            Some(_) => {}
        }
        seen.insert(name);
    }
    for s in bodies.iter().chain(FRAGMENTS) {
        if !seen.contains(s.name) {
            problems.push(format!("{}: registered but no file under shaders/", s.name));
        }
    }
    for f in FRAGMENTS {
        let include = format!("#include \"{}\"", f.name);
        let used = bodies
            .iter()
            .chain(FRAGMENTS)
            .any(|s| s.source.lines().any(|l| l.trim() == include));
        if !used {
            problems.push(format!(
                "fragment {}: no body or fragment includes it",
                f.name
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
