//! The command-line contract: exit codes, `info`, `check`, `bench --json`.

use std::process::Command;

fn ssm_mla(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ssm-mla"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run ssm-mla")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn info_lists_adapters_with_limits() {
    let out = ssm_mla(&["info"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = text(&out);
    assert!(s.contains("adapter 0:"), "{s}");
    assert!(s.contains("max_storage_buffer_binding_size"), "{s}");
    assert!(s.contains("subgroup size"), "{s}");
}

#[test]
fn check_passes_on_this_adapter() {
    let out = ssm_mla(&["check", "--seed", "7"]);
    let s = text(&out);
    assert!(out.status.success(), "{s}");
    assert!(s.contains("all cases passed"), "{s}");
    assert!(!s.contains("FAIL"), "{s}");
}

#[test]
fn bench_writes_json_with_ceilings_and_rooflines() {
    let path = std::env::temp_dir().join(format!("ssm-mla-bench-{}.json", std::process::id()));
    let out = ssm_mla(&[
        "bench",
        "--quick",
        "--kernel",
        "stream_copy",
        "--json",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(json["ceilings"]["copy_gbps"].as_f64().unwrap() > 0.0);
    assert!(json["ceilings"]["fma_gflops"].as_f64().unwrap() > 0.0);
    let results = json["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        assert_eq!(r["kernel"], "stream_copy");
        assert!(r["gpu_seconds"].as_f64().unwrap() > 0.0);
        assert!(r["roofline_fraction"].as_f64().unwrap() > 0.0);
        assert!(r["bytes"].as_u64().unwrap() > 0);
    }
}

#[test]
fn bench_dtype_counts_half_bytes_and_skips_f32_only_kernels() {
    let path = std::env::temp_dir().join(format!("ssm-mla-bench-bf16-{}.json", std::process::id()));
    let out = ssm_mla(&[
        "bench",
        "--quick",
        "--kernel",
        "latent_cache",
        "--dtype",
        "bf16",
        "--json",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    let results = json["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        assert!(r["size"].as_str().unwrap().ends_with(" bf16"), "{r}");
        // append T tokens of W = 576 values: read as f32 rows, written as bf16, plus the slots.
        let t: u64 = r["size"].as_str().unwrap()["append T=".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            r["bytes"].as_u64().unwrap(),
            t * 576 * (4 + 2) + 4 * t,
            "{r}"
        );
    }
    // rope with f16 x and y: T·H·d halves read and written, plus the positions and the turns.
    let path = std::env::temp_dir().join(format!("ssm-mla-bench-rope-{}.json", std::process::id()));
    let out = ssm_mla(&[
        "bench",
        "--quick",
        "--kernel",
        "rope",
        "--dtype",
        "f16",
        "--json",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    let results = json["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        assert_eq!(r["size"].as_str().unwrap(), "T=64 H=16 d=64 f16", "{r}");
        assert_eq!(
            r["bytes"].as_u64().unwrap(),
            2 * 2 * 64 * 16 * 64 + 4 * (64 + 64),
            "{r}"
        );
    }
    // A kernel without half storage says so.
    let out = ssm_mla(&["bench", "--quick", "--kernel", "fma_peak", "--dtype", "f16"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("stores f32 only so far"),
        "{}",
        text(&out)
    );
}

/// The scans' half rows: u and y counted at 2 bytes, the parameters at 4.
#[test]
fn bench_dtype_has_half_rows_for_the_scans() {
    let path = std::env::temp_dir().join(format!("ssm-mla-bench-f16-{}.json", std::process::id()));
    let out = ssm_mla(&[
        "bench",
        "--quick",
        "--kernel",
        "diagonal_scan",
        "--dtype",
        "f16",
        "--json",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    let results = json["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        let size = r["size"].as_str().unwrap();
        assert!(
            size.starts_with("Bt=1 H=256 L=256 N=16") && size.ends_with(" f16"),
            "{r}"
        );
        // u and y (Bt·H·L halves each), lambda, b, c (H·N complex f32), dt and d (H f32).
        let (h, l, n) = (256u64, 256u64, 16u64);
        assert_eq!(
            r["bytes"].as_u64().unwrap(),
            2 * 2 * h * l + 4 * (6 * h * n + 2 * h),
            "{r}"
        );
    }
}

#[test]
fn usage_errors_exit_with_2() {
    let out = ssm_mla(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
#[cfg(target_os = "linux")]
fn main_job_without_an_adapter_says_so_and_runs_the_cpu_path() {
    // DX12 does not exist on this platform's wgpu build: no adapter at all.
    let out = Command::new(env!("CARGO_BIN_EXE_ssm-mla"))
        .env("WGPU_BACKEND", "dx12")
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run ssm-mla");
    let s = text(&out);
    assert!(out.status.success(), "{s}");
    let first = s.lines().next().unwrap_or_default();
    assert!(first.starts_with("no GPU"), "{s}");
    assert!(first.contains("mesa-vulkan-drivers"), "{s}");
    assert!(s.contains("CPU path"), "{s}");
    assert!(s.contains("stream_copy") && s.contains("fma_peak"), "{s}");
}

#[test]
fn hippo_demo_converges_and_plots() {
    let dir = std::env::temp_dir().join(format!("ssm-mla-cli-hippo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("legt.png");
    let out = ssm_mla(&[
        "hippo",
        "--measure",
        "legt",
        "--n",
        "4,8,16,32",
        "--plot",
        png.to_str().unwrap(),
    ]);
    let s = text(&out);
    assert!(out.status.success(), "{s}");
    // Rows "N max|err| rms colour": the max error must shrink as N grows.
    let errors: Vec<f64> = s
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() >= 3 && cols[0].parse::<usize>().is_ok())
                .then(|| cols[1].parse::<f64>().ok())
                .flatten()
        })
        .collect();
    assert_eq!(errors.len(), 4, "{s}");
    assert!(errors.windows(2).all(|w| w[1] < w[0]), "{errors:?}");
    check_figure(&png);
    // Bad arguments write no plot.
    let never = dir.join("never.png");
    let out = ssm_mla(&["hippo", "--n", "0", "--plot", never.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!never.exists());

    let st = dir.join("legs.safetensors");
    let out = ssm_mla(&[
        "run",
        "hippo",
        "--measure",
        "legs",
        "--n",
        "6",
        "--output",
        st.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let file = ssm_mla::SafeTensors::read(&st).unwrap();
    assert_eq!(file.get("A").unwrap().shape, vec![6, 6]);
    assert_eq!(file.get("B").unwrap().shape, vec![6]);
    // LegS: A[n,n] = -(n+1), B[n] = sqrt(2n+1).
    assert_eq!(file.get("A").unwrap().data[7], -2.0);
    assert!((file.get("B").unwrap().data[2] - 5f32.sqrt()).abs() < 1e-6);

    let out = ssm_mla(&[
        "run",
        "hippo",
        "--measure",
        "nope",
        "--n",
        "6",
        "--output",
        st.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(text(&out).trim().lines().count(), 1, "{}", text(&out));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The hippo figure is a 1000×600 RGB PNG whose title, axis labels and legend were drawn: dark
/// pixels (text) in the title band above the plot and in the y-axis label band at the left.
fn check_figure(path: &std::path::Path) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (1000, 600));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let dark = |x0: usize, x1: usize, y0: usize, y1: usize| {
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let i = 3 * (y * 1000 + x);
                pixels[i..i + 3].iter().all(|&c| c < 100)
            })
            .count()
    };
    assert!(dark(150, 850, 0, 45) > 300, "the title band is blank");
    assert!(dark(0, 40, 150, 450) > 100, "the y-axis label is missing");
    assert!(
        dark(300, 700, 555, 600) > 100,
        "the x-axis label is missing"
    );
}

#[test]
fn malformed_files_exit_2_with_one_line() {
    let dir = std::env::temp_dir().join(format!("ssm-mla-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}").unwrap();
    let bad_config = dir.join("config.json");
    std::fs::write(&bad_config, r#"{"hidden_size": "wide"}"#).unwrap();
    let out_path = dir.join("out.safetensors");
    let o = out_path.to_str().unwrap();
    let j = junk.to_str().unwrap();
    for args in [
        vec!["run", "selective-scan", "--input", j, "--output", o],
        vec!["run", "state-update", "--input", j, "--output", o],
        vec![
            "run",
            "mla",
            "--config",
            bad_config.to_str().unwrap(),
            "--weights",
            j,
            "--input",
            j,
            "--output",
            o,
        ],
        vec![
            "run",
            "selective-scan",
            "--input",
            "/no/such/file",
            "--output",
            o,
        ],
    ] {
        let out = ssm_mla(&args);
        let s = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {s}");
        let lines: Vec<&str> = s
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {s}");
        assert!(!out_path.exists(), "nothing written on error");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
