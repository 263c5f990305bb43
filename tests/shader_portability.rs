//! Every `.wgsl` file under `shaders/` — found by walking the directory, not from a list — must
//! parse and validate with naga and translate to SPIR-V 1.3 (Vulkan), MSL 2.4 (Metal) and HLSL
//! SM 6.2 (DX12). `override` constants are resolved with their defaults first, so every override
//! must have one. If `spirv-val` is installed the SPIR-V is also checked by it.

use naga::back::pipeline_constants::process_overrides;
use naga::valid::{Capabilities, ValidationFlags, Validator};
use std::path::{Path, PathBuf};

fn wgsl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            wgsl_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "wgsl") {
            out.push(path);
        }
    }
}

fn validator() -> Validator {
    Validator::new(
        ValidationFlags::all(),
        Capabilities::SUBGROUP | Capabilities::SHADER_FLOAT16,
    )
}

fn check(path: &Path) -> Result<(), String> {
    let src = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
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
        spirv_val(path, entry, &words)?;

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

fn spirv_val(path: &Path, entry: &str, words: &[u32]) -> Result<(), String> {
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
        path.file_stem().unwrap().to_string_lossy()
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
fn every_shader_ports_to_vulkan_metal_and_dx12() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files = Vec::new();
    wgsl_files(&root, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "no shaders found under {}",
        root.display()
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| check(f).err().map(|e| format!("{}: {e}", f.display())))
        .collect();
    eprintln!("checked {} shaders", files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_embedded_shader_is_a_file_under_shaders() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    for shader in ssm_mla::shaders::ALL {
        let path = root.join(format!("{}.wgsl", shader.name));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(text, shader.source, "{} is stale", shader.name);
    }
}
