//! Use the crate with a wgpu device the application already owns: the app creates its adapter
//! and device as it likes (here: the default adapter, default limits, no optional features), hands
//! clones to `Gpu::from_device`, and keeps using the device for its own work. Kernels pick their
//! fallback paths (no subgroups here) from the device's features.
//!
//! Run: `cargo run --example app_device`

use ssm_mla::ops::rmsnorm::{RmsNorm, Rows};
use ssm_mla::wgpu;
use ssm_mla::{Gpu, Rng};

fn main() -> ssm_mla::Result<()> {
    // The application's own setup.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .map_err(|e| ssm_mla::Error::NoAdapter {
                detail: e.to_string(),
            })?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("my app"),
        ..Default::default()
    }))
    .map_err(|e| ssm_mla::Error::invalid(e.to_string()))?;

    // Hand it to the crate (wgpu handles are cheap clones of the same device).
    let gpu = Gpu::from_device(device.clone(), queue.clone());
    println!(
        "adopted: {} (subgroups: {})",
        gpu.describe(),
        gpu.has_subgroups()
    );

    // The app's own buffer, filled by the app, wrapped as a crate tensor through an upload.
    let (rows, width) = (3, 10);
    let mut rng = Rng::new(1);
    let x = rng.normal_vec(rows * width, 0.0, 2.0);
    let weight = vec![1.0f32; width];
    let x_t = gpu.upload_f32(&[rows, width], &x)?;
    let w_t = gpu.upload_f32(&[width], &weight)?;
    let y_t = gpu.empty(&[rows, width], ssm_mla::DType::F32)?;
    let norm = RmsNorm::new(&gpu)?;
    let mut work = gpu.batch();
    norm.record(
        &mut work,
        &x_t,
        Rows::contiguous(width),
        &w_t,
        &y_t,
        Rows::contiguous(width),
        rows,
        1e-6,
    )?;
    work.run()?;
    let y = gpu.read_f32(&y_t)?;
    for r in 0..rows {
        let row = &y[r * width..(r + 1) * width];
        let rms = (row.iter().map(|v| v * v).sum::<f32>() / width as f32).sqrt();
        println!("row {r}: rms after rmsnorm = {rms:.5}");
        assert!((rms - 1.0).abs() < 1e-3);
    }

    // The app keeps using its device: copy the result into a buffer of its own.
    let mine = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("app buffer"),
        size: y_t.size_bytes(),
        usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(y_t.buffer(), 0, &mine, 0, y_t.size_bytes());
    queue.submit([encoder.finish()]);
    mine.slice(..).map_async(wgpu::MapMode::Read, |_| {});
    gpu.wait()?;
    let bytes = mine
        .slice(..)
        .get_mapped_range()
        .map_err(|e| ssm_mla::Error::invalid(e.to_string()))?;
    let first: f32 = bytemuck::pod_read_unaligned(&bytes[..4]);
    println!("app read back y[0] = {first:.5} from its own buffer");
    Ok(())
}
