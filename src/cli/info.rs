//! `ssm-mla info`: every adapter the environment offers, with what matters for compute.

use ssm_mla::runtime::{describe_adapter, enumerate_adapters, wanted_features};
use ssm_mla::Result;

pub fn run() -> Result<i32> {
    let adapters = enumerate_adapters();
    if adapters.is_empty() {
        println!("no GPU adapter found; {}", ssm_mla::error::INSTALL_HINT);
        return Ok(0);
    }
    let chosen = ssm_mla::runtime::adapter_from_env()
        .ok()
        .map(|a| a.get_info());
    for (i, adapter) in adapters.iter().enumerate() {
        let info = adapter.get_info();
        let mark = if chosen.as_ref() == Some(&info) {
            "  (default)"
        } else {
            ""
        };
        println!("adapter {i}: {}{mark}", describe_adapter(&info));
        let features = adapter.features();
        let named = [
            ("SHADER_F16", wgpu::Features::SHADER_F16),
            ("SUBGROUP", wgpu::Features::SUBGROUP),
            ("TIMESTAMP_QUERY", wgpu::Features::TIMESTAMP_QUERY),
        ];
        debug_assert!(named.iter().all(|(_, f)| wanted_features().contains(*f)));
        let useful: Vec<String> = named
            .iter()
            .map(|(name, f)| {
                let yes = if features.contains(*f) { "yes" } else { "no" };
                format!("{name}={yes}")
            })
            .collect();
        println!("  features: {}", useful.join(" "));
        let l = adapter.limits();
        println!(
            "  max_storage_buffer_binding_size {} MiB, max_buffer_size {} MiB",
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20
        );
        println!(
            "  workgroup storage {} KiB, invocations/workgroup {}, size x/y/z {}/{}/{}",
            l.max_compute_workgroup_storage_size / 1024,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroup_size_x,
            l.max_compute_workgroup_size_y,
            l.max_compute_workgroup_size_z
        );
        println!(
            "  workgroups per dimension {}, storage buffers per stage {}, subgroup size {}..{}",
            l.max_compute_workgroups_per_dimension,
            l.max_storage_buffers_per_shader_stage,
            info.subgroup_min_size,
            info.subgroup_max_size
        );
    }
    Ok(0)
}
