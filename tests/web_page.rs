//! The page under `web/` in headless Chromium: served by a small static file server, driven
//! over WebDriver (chromedriver), it must end with `#status` reading "all cases passed", the
//! bench finished, and pixels drawn on both the bench chart and the HiPPO plot (several colours
//! each: bars or curves and their legend), not only the script having run.
//!
//! Ignored by plain `cargo test`: it needs Chromium, chromedriver and the page built by
//! `scripts/build-web`. `scripts/test-web` builds the page and runs it (`--ignored`); there a
//! missing browser or adapter fails it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Serve `root` over HTTP on an ephemeral port until the process ends; returns the port.
fn serve(root: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || respond(stream, &root));
        }
    });
    port
}

fn respond(mut stream: TcpStream, root: &Path) {
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or("/");
    let path = if path == "/" { "/index.html" } else { path };
    let file = root.join(path.trim_start_matches('/'));
    let (status, body) = match (path.contains(".."), std::fs::read(&file)) {
        (false, Ok(body)) => ("200 OK", body),
        _ => ("404 Not Found", b"not found".to_vec()),
    };
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        _ => "application/octet-stream",
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
}

/// One WebDriver call: `method` on `path` with a JSON body; returns the response's `value`.
fn webdriver(port: u16, method: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let body = body.to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to chromedriver");
    // A page busy in a long task answers late; never wait forever on one call.
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver keeps the connection open whatever the request asks (read_to_end would
    // wait forever), so read the head, then exactly Content-Length bytes (or chunks to the last).
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let body_start = loop {
        let n = stream.read(&mut buf).expect("a chromedriver response");
        assert!(n > 0, "chromedriver closed the connection");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&raw[..body_start]).to_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let done = |raw: &[u8]| match length {
        Some(len) => raw.len() >= body_start + len,
        None => raw.ends_with(b"0\r\n\r\n"),
    };
    while !done(&raw) {
        let n = stream.read(&mut buf).expect("a chromedriver response");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let mut payload = String::from_utf8_lossy(&raw[body_start..]).to_string();
    if length.is_none() {
        let mut joined = String::new();
        let mut rest = payload.as_str();
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 || tail.len() < size {
                break;
            }
            joined.push_str(&tail[..size]);
            rest = tail[size..].trim_start_matches("\r\n");
        }
        payload = joined;
    }
    let json: serde_json::Value = serde_json::from_str(&payload)
        .unwrap_or_else(|e| panic!("chromedriver answered {head}\n{payload}\n({e})"));
    json["value"].clone()
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PROBE: &str = r#"
const ink = (id) => {
  const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0; const colours = new Set();
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235) {
      n++; colours.add(((d[i] >> 5) << 6) | ((d[i + 1] >> 5) << 3) | (d[i + 2] >> 5));
    }
  }
  return { ink: n, colours: colours.size };
};
return JSON.stringify({
  status: document.getElementById('status').textContent,
  bench: document.getElementById('bench-status').textContent,
  progress: document.getElementById('progress').textContent,
  adapter: document.getElementById('adapter').textContent,
  records: (window.benchRecords || []).length,
  chart: ink('bench-chart'),
  plot: ink('hippo-plot'),
  plotted: document.getElementById('hippo-plot').dataset.drawn || null,
});
"#;

#[test]
#[ignore = "needs Chromium, chromedriver and the page built by scripts/build-web (scripts/test-web runs it)"]
fn the_page_checks_benches_and_plots_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    assert!(
        root.join("pkg/ssm_mla_bg.wasm").exists(),
        "the page is not built: run scripts/build-web"
    );
    let site = serve(root);
    let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let driver_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _driver = Driver(
        Command::new(&chromedriver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e}")),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", driver_port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut options = serde_json::json!({
        "args": ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--disable-dev-shm-usage"]
    });
    if let Ok(binary) = std::env::var("CHROMIUM") {
        options["binary"] = binary.into();
    }
    let session = webdriver(
        driver_port,
        "POST",
        "/session",
        &serde_json::json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}}),
    );
    let id = session["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no WebDriver session: {session}"))
        .to_string();
    let url = format!("http://127.0.0.1:{site}/index.html");
    webdriver(
        driver_port,
        "POST",
        &format!("/session/{id}/url"),
        &serde_json::json!({ "url": url }),
    );
    let probe = || -> serde_json::Value {
        let text = webdriver(
            driver_port,
            "POST",
            &format!("/session/{id}/execute/sync"),
            &serde_json::json!({"script": PROBE, "args": []}),
        );
        serde_json::from_str(text.as_str().unwrap_or("{}")).unwrap_or_default()
    };
    let limit = Duration::from_secs(1200);
    let start = Instant::now();
    let state = loop {
        let state = probe();
        let status = state["status"].as_str().unwrap_or("");
        let bench = state["bench"].as_str().unwrap_or("");
        let settled =
            status.contains("passed") || status.contains("failed") || status.contains("no WebGPU");
        if settled && (bench.starts_with("done") || bench.contains("no WebGPU")) {
            break state;
        }
        if start.elapsed() > limit {
            break state;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    webdriver(
        driver_port,
        "DELETE",
        &format!("/session/{id}"),
        &serde_json::json!({}),
    );
    eprintln!(
        "page after {:.0} s: {state:#}",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(state["status"], "all cases passed", "{state:#}");
    assert!(
        state["bench"].as_str().unwrap_or("").starts_with("done"),
        "{state:#}"
    );
    assert!(
        state["records"].as_u64().unwrap_or(0) > 0,
        "no bench records: {state:#}"
    );
    for canvas in ["chart", "plot"] {
        assert!(
            state[canvas]["ink"].as_u64().unwrap_or(0) > 5000
                && state[canvas]["colours"].as_u64().unwrap_or(0) >= 3,
            "the {canvas} canvas is blank or monochrome: {state:#}"
        );
    }
    assert_eq!(state["plotted"], "legt", "{state:#}");
}
