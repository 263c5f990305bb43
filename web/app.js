// The page: load the WebAssembly build of ssm-mla, run the check suite on this browser's
// WebGPU adapter, then a quick bench drawn as a roofline chart; the HiPPO demo runs on the CPU
// and does not need WebGPU. `#status` reads "running" until "all cases passed" or
// "N cases failed"; `#bench-status` ends in "done" (the page test waits for both).
import init, { WebGpu, hippo_demo } from "./pkg/ssm_mla.js";

const $ = (id) => document.getElementById(id);
const MEASURES = { legt: "LegT", legs: "LegS", lagt: "LagT", fout: "FouT" };
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

function fmt(x, digits = 2) {
  return x === null || x === undefined || !isFinite(x) ? "–" : Number(x).toExponential(digits);
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function missing(message) {
  const box = $("no-webgpu");
  box.hidden = false;
  box.textContent = message;
  $("adapter").textContent = "no WebGPU adapter";
}

// Axes with ticks and labels inside `area` of a 2D context; returns the data→pixel maps.
function axes(ctx, area, x0, x1, y0, y1, xLabel, yLabel, xTicks, yTicks) {
  const { left, top, width, height } = area;
  const px = (x) => left + ((x - x0) / (x1 - x0)) * width;
  const py = (y) => top + height - ((y - y0) / (y1 - y0)) * height;
  ctx.strokeStyle = "#333";
  ctx.lineWidth = 1;
  ctx.strokeRect(left, top, width, height);
  ctx.fillStyle = "#333";
  ctx.font = "12px sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (const t of xTicks) {
    ctx.beginPath(); ctx.moveTo(px(t.v), top + height); ctx.lineTo(px(t.v), top + height + 4); ctx.stroke();
    if (t.label !== undefined) ctx.fillText(t.label, px(t.v), top + height + 6);
  }
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of yTicks) {
    ctx.beginPath(); ctx.moveTo(left - 4, py(v)); ctx.lineTo(left, py(v)); ctx.stroke();
    ctx.fillText(String(Math.round(v * 1000) / 1000), left - 6, py(v));
  }
  ctx.font = "13px sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "bottom";
  ctx.fillText(xLabel, left + width / 2, top + height + 44);
  ctx.save();
  ctx.translate(16, top + height / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = "top";
  ctx.fillText(yLabel, 0, 0);
  ctx.restore();
  return { px, py };
}

function niceTicks(lo, hi, count) {
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / count)));
  const mult = [1, 2, 5, 10].find((m) => (hi - lo) / (step * m) <= count) || 10;
  const s = step * mult;
  const out = [];
  for (let v = Math.ceil(lo / s) * s; v <= hi + 1e-12; v += s) out.push(v);
  return out;
}

// The bench chart: one bar per case, its roofline fraction (device time floor / measured).
function drawBench(records) {
  const canvas = $("bench-chart");
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const area = { left: 70, top: 40, width: canvas.width - 90, height: canvas.height - 150 };
  ctx.fillStyle = "#222";
  ctx.font = "bold 14px sans-serif";
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  ctx.fillText("Roofline fraction per bench case (1 = at the measured copy/FMA ceiling)", area.left, 10);
  const top = Math.max(1, ...records.map((r) => r.roofline_fraction));
  const { py } = axes(ctx, area, 0, Math.max(records.length, 1), 0, top,
    "bench case (kernel, size)", "fraction of roofline", [], niceTicks(0, top, 5));
  const kernels = [...new Set(records.map((r) => r.kernel))];
  const w = area.width / Math.max(records.length, 1);
  records.forEach((r, i) => {
    ctx.fillStyle = COLOURS[kernels.indexOf(r.kernel) % COLOURS.length];
    const x = area.left + i * w + w * 0.15;
    ctx.fillRect(x, py(r.roofline_fraction), w * 0.7, py(0) - py(r.roofline_fraction));
    ctx.save();
    ctx.translate(x + w * 0.35, area.top + area.height + 6);
    ctx.rotate(-Math.PI / 4);
    ctx.fillStyle = "#333";
    ctx.font = "10px sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    ctx.fillText(`${r.kernel} ${r.size}`.slice(0, 28), 0, 0);
    ctx.restore();
  });
  // Legend: one swatch per kernel.
  ctx.font = "11px sans-serif";
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  kernels.forEach((k, i) => {
    const x = area.left + area.width - 150, y = area.top + 10 + i * 15;
    ctx.fillStyle = COLOURS[i % COLOURS.length];
    ctx.fillRect(x, y - 5, 10, 10);
    ctx.fillStyle = "#222";
    ctx.fillText(k, x + 14, y);
  });
}

// The HiPPO plot: the signal (black) and each N's reconstruction, with a legend.
function drawHippo() {
  const canvas = $("hippo-plot");
  const ctx = canvas.getContext("2d");
  $("hippo-error").textContent = "";
  let demo;
  try {
    const ns = $("hippo-n").value.split(",").map((s) => parseInt(s.trim(), 10)).filter((n) => !isNaN(n));
    demo = JSON.parse(hippo_demo($("hippo-measure").value, Uint32Array.from(ns)));
  } catch (e) {
    $("hippo-error").textContent = String(e);
    return;
  }
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const area = { left: 70, top: 40, width: canvas.width - 100, height: canvas.height - 110 };
  const all = [demo.signal, ...demo.curves.map((c) => c.values)].flat().filter(isFinite);
  let lo = Math.min(...demo.signal), hi = Math.max(...demo.signal);
  const span = hi - lo || 1;
  lo = Math.max(Math.min(...all), lo - 0.5 * span);
  hi = Math.min(Math.max(...all), hi + 0.5 * span);
  const t0 = demo.times[0], t1 = demo.times[demo.times.length - 1];
  ctx.fillStyle = "#222";
  ctx.font = "bold 14px sans-serif";
  ctx.textAlign = "left";
  ctx.textBaseline = "top";
  ctx.fillText(`HiPPO-${MEASURES[demo.measure] || demo.measure} memory (ZOH): the history reconstructed from the final state`, area.left, 10);
  const xt = niceTicks(t0, t1, 8).map((v) => ({ v, label: String(Math.round(v * 100) / 100) }));
  const { px, py } = axes(ctx, area, t0, t1, lo, hi, "time t (input time units)", "value", xt, niceTicks(lo, hi, 6));
  const line = (values, colour, width) => {
    ctx.save();
    ctx.beginPath();
    ctx.rect(area.left, area.top, area.width, area.height);
    ctx.clip();
    ctx.strokeStyle = colour;
    ctx.lineWidth = width;
    ctx.beginPath();
    values.forEach((v, i) => {
      const y = py(Math.min(hi, Math.max(lo, v)));
      i ? ctx.lineTo(px(demo.times[i]), y) : ctx.moveTo(px(demo.times[i]), y);
    });
    ctx.stroke();
    ctx.restore();
  };
  line(demo.signal, "#000", 2.5);
  demo.curves.forEach((c, i) => line(c.values, COLOURS[i % COLOURS.length], 1.5));
  const entries = [["signal", "#000"], ...demo.curves.map((c, i) =>
    [`N = ${c.n} (max |error| ${fmt(c.max_error)})`, COLOURS[i % COLOURS.length]])];
  ctx.font = "12px sans-serif";
  ctx.textBaseline = "middle";
  const lx = area.left + 10, ly = area.top + 12;
  ctx.fillStyle = "rgba(255,255,255,0.85)";
  ctx.fillRect(lx - 4, ly - 9, 250, entries.length * 16 + 4);
  entries.forEach(([label, colour], i) => {
    ctx.strokeStyle = colour;
    ctx.lineWidth = 3;
    ctx.beginPath(); ctx.moveTo(lx, ly + i * 16); ctx.lineTo(lx + 22, ly + i * 16); ctx.stroke();
    ctx.fillStyle = "#222";
    ctx.textAlign = "left";
    ctx.fillText(label, lx + 28, ly + i * 16);
  });
  canvas.dataset.drawn = demo.measure;
}

async function check(gpu, seed) {
  const body = $("checks").tBodies[0];
  let cases = 0, failed = 0;
  for (const kernel of JSON.parse(WebGpu.kernels())) {
    $("progress").textContent = `(${kernel}…)`;
    const rows = JSON.parse(await gpu.check(kernel, seed));
    for (const r of rows) {
      cases += 1;
      const row = body.insertRow();
      if (!r.passed) { failed += 1; row.className = "fail"; row.title = r.detail; }
      cell(row, r.kernel);
      cell(row, r.case);
      cell(row, r.passed ? "pass" : "FAIL", r.passed ? "pass" : "fail-text");
      cell(row, fmt(r.max_abs), "num");
      cell(row, fmt(r.max_rel), "num");
      cell(row, r.rtol === undefined ? r.detail : fmt(r.rtol, 0), "num");
    }
  }
  $("progress").textContent = `(${cases} cases, seed ${seed})`;
  $("status").textContent = failed ? `${failed} cases failed` : "all cases passed";
}

async function bench(gpu) {
  const status = $("bench-status");
  status.textContent = "measuring the copy and FMA ceilings";
  const ceilings = await gpu.ceilings();
  const c = JSON.parse(ceilings);
  $("ceilings").textContent = `ceilings: copy ${c.copy_gbps.toFixed(2)} GB/s (${c.copy_shape}), ` +
    `FMA ${c.fma_gflops.toFixed(2)} GFLOP/s (${c.fma_shape}), timing ${c.timing}`;
  const body = $("bench").tBodies[0];
  const records = [];
  for (const kernel of JSON.parse(WebGpu.kernels())) {
    status.textContent = `running (${kernel})`;
    let rows;
    try {
      rows = JSON.parse(await gpu.bench(kernel, ceilings));
    } catch (e) {
      const row = body.insertRow();
      cell(row, kernel);
      cell(row, `not in the browser: ${e}`).colSpan = 7;
      continue;
    }
    for (const r of rows) {
      records.push(r);
      const row = body.insertRow();
      cell(row, r.kernel);
      cell(row, r.size);
      cell(row, `${(r.gpu_seconds * 1e3).toFixed(3)} ms`, "num");
      cell(row, r.gbps.toFixed(2), "num");
      cell(row, r.gflops.toFixed(2), "num");
      cell(row, r.roofline_fraction.toFixed(3), "num");
      cell(row, r.bound);
      cell(row, r.timing);
    }
    drawBench(records);
  }
  status.textContent = `done (${records.length} cases)`;
  window.benchRecords = records;
}

async function main() {
  await init();
  $("hippo-form").addEventListener("submit", (e) => { e.preventDefault(); drawHippo(); });
  $("hippo-measure").addEventListener("change", drawHippo);
  drawHippo();
  if (!navigator.gpu) {
    missing("This browser does not offer WebGPU (navigator.gpu is missing), so the kernels cannot run here. " +
      "Use a recent Chrome, Edge or Chromium (in Chromium on Linux start it with --enable-unsafe-webgpu), " +
      "Safari 26, or Firefox with WebGPU enabled. The HiPPO demo below runs on the CPU and still works.");
    $("status").textContent = "no WebGPU";
    $("bench-status").textContent = "no WebGPU";
    return;
  }
  let gpu;
  try {
    gpu = await WebGpu.create(false);
  } catch (e) {
    missing(`WebGPU is present but gave no usable adapter or device: ${e}`);
    $("status").textContent = "no WebGPU adapter";
    $("bench-status").textContent = "no WebGPU adapter";
    return;
  }
  const a = JSON.parse(gpu.adapter());
  // The browser names its adapter in GPUAdapterInfo (wgpu's web backend leaves the name empty).
  try {
    const info = (await navigator.gpu.requestAdapter())?.info;
    if (info) {
      a.name = a.name || [info.vendor, info.architecture, info.device, info.description].filter((x) => x).join(" ");
      a.vendor = info.vendor;
      a.is_fallback = info.isFallbackAdapter;
    }
  } catch (e) { /* the name is cosmetic */ }
  $("adapter").textContent = `${a.name || "(unnamed)"}${a.is_fallback ? " (fallback adapter)" : ""} ` +
    `(${a.backend}, ${a.device_type}); optional features: ` +
    `${a.features.length ? a.features.join(", ") : "none"}; largest storage binding ${(a.max_storage_binding / 2 ** 20).toFixed(0)} MiB`;
  window.adapterInfo = a;
  const seed = Number(new URLSearchParams(location.search).get("seed") || 1);
  try {
    await check(gpu, seed);
  } catch (e) {
    $("status").textContent = "1 cases failed";
    $("progress").textContent = String(e);
  }
  await bench(gpu);
}

main().catch((e) => {
  $("status").textContent = `error: ${e}`;
  console.error(e);
});
