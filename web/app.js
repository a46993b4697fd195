// The page of `wgpu-norm web`: the adapter, the check (every op and kernel
// the adapter can run, several shapes, against the page's own f64
// reference), the bench (each op against a copy of the same bytes), and the
// whole result as JSON. With ?auto=1 it runs everything and logs one line:
// `wgpu-norm result: {...}`.

import { openDevice, describeAdapter, runPlan, timePlan, timeCopy, toHalf, fromHalf } from "./runner.js";
import { normal, forward, backward, maxError, maxAbs } from "./reference.js";

const $ = (id) => document.getElementById(id);
const result = { adapter: null, ok: false, cases: 0, failures: [], check: [], bench: [] };

function log(text) {
  $("status").textContent = text;
}

async function post(path, body) {
  const r = await fetch(path, { method: "POST", body: JSON.stringify(body) });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

const roundHalf = (v) => Float32Array.from(v, (a) => fromHalf(toHalf(a)));

// The inputs of a case, by ONNX name (seeded by the case's index).
function inputsOf(c, seed) {
  const n = c.shape.reduce((a, d) => a * d, 1);
  const cols = c.cols;
  const f16 = c.dtype === "f16";
  const r = (v) => (f16 ? roundHalf(v) : v);
  return {
    X: r(normal(seed, n, 0.5, 2.0)),
    Scale: r(normal(seed + 1, cols, 1.0, 0.3)),
    B: r(normal(seed + 2, cols, 0.0, 0.3)),
    dY: r(normal(seed + 3, n, 0.0, 1.0)),
    R: r(normal(seed + 4, n, -0.25, 1.5)),
    RB: r(normal(seed + 5, cols, 0.1, 0.2)),
  };
}

// Runs one case and compares it with the reference; returns its record.
async function check(device, c, seed) {
  const plan = c.plan;
  const names = plan.buffers.map((b) => b.name);
  const inp = inputsOf(c, seed);
  const rms = c.op.startsWith("rms");
  const gamma = names.includes("Scale") ? inp.Scale : null;
  const beta = names.includes("B") && !c.op.endsWith("backward") ? inp.B : null;
  const residual = names.includes("R");
  const rec = { op: residual ? `${c.op}+residual` : c.op, shape: c.shape, dtype: c.dtype, kernel: plan.kernel, errors: {}, ok: true };
  let out;
  try {
    out = await runPlan(device, plan, inp);
  } catch (e) {
    rec.ok = false;
    rec.refused = String(e.message || e);
    return rec;
  }
  const f16 = c.dtype === "f16";
  const verdict = (name, err, tol) => {
    rec.errors[name] = { error: err, tolerance: tol };
    if (!(err <= tol)) rec.ok = false;
  };
  if (c.op.endsWith("backward")) {
    const want = backward(inp.X, inp.dY, c.cols, gamma, plan.epsilon, rms);
    const k = f16 ? 250 : 1;
    verdict("dX", maxError(out.dX, want.dx), 2e-5 * k * want.dxScale + 1e-7);
    if (out.dScale) verdict("dScale", maxError(out.dScale, want.dgamma), 2e-5 * k * want.dgammaScale + 1e-6);
    if (out.dB) verdict("dB", maxError(out.dB, want.dbeta), 2e-5 * k * want.dbetaScale + 1e-6);
  } else {
    // The fused residual normalises s = x + R + RB, which the GPU rounds to
    // f32 (two additions) before it normalises: so does the reference.
    let x = inp.X;
    let rounding = 0;
    if (names.includes("R")) {
      x = new Float32Array(inp.X.length);
      let sMax = 0;
      const sAbs = new Float64Array(x.length);
      for (let i = 0; i < x.length; i++) {
        x[i] = Math.fround(Math.fround(inp.X[i] + inp.R[i]) + inp.RB[i % c.cols]);
        sAbs[i] = Math.abs(inp.X[i]) + Math.abs(inp.R[i]) + Math.abs(inp.RB[i % c.cols]);
        sMax = Math.max(sMax, Math.abs(x[i]));
      }
      let e = 0;
      let tolS = 0;
      for (let i = 0; i < x.length; i++) {
        e = Math.max(e, Math.abs(out.S[i] - x[i]));
        tolS = Math.max(tolS, 2 * 2 ** -23 * sAbs[i]);
      }
      verdict("S", e, tolS);
      rounding = sMax;
    }
    const want = forward(x, c.cols, gamma, beta, plan.epsilon, rms);
    const factor = f16 ? 1e-3 : 4e-6;
    const gMax = gamma ? maxAbs(gamma) : 1;
    let tol = factor * (gMax * (1 + want.xhatMax) + (beta ? maxAbs(beta) : 0));
    // One f32 ulp of |s|, as the normalisation scales it (by rstd and gamma).
    if (rounding) tol += 2 ** -23 * rounding * maxAbs(want.rstd) * gMax;
    verdict("Y", maxError(out.Y, want.y), tol);
    if (out.Mean) verdict("Mean", maxError(out.Mean, want.mean), 1e-6 * maxAbs(x) + 1e-7);
    if (out.InvStdDev) {
      verdict("InvStdDev", maxError(out.InvStdDev, want.rstd), 1e-5 * maxAbs(want.rstd));
    }
  }
  return rec;
}

function addRow(rec) {
  const tr = document.createElement("tr");
  const err = Object.entries(rec.errors)
    .map(([k, v]) => `${k} ${v.error.toExponential(2)} (tol ${v.tolerance.toExponential(2)})`)
    .join(", ");
  for (const text of [rec.op, rec.shape.join("x"), rec.dtype, rec.kernel, rec.refused || err, rec.ok ? "ok" : "FAILED"]) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  tr.className = rec.ok ? "ok" : "bad";
  $("check-rows").appendChild(tr);
}

async function runCheck(device, cases) {
  result.check = [];
  result.failures = [];
  $("check-rows").textContent = "";
  for (let i = 0; i < cases.length; i++) {
    log(`check ${i + 1}/${cases.length}: ${cases[i].op} ${cases[i].shape.join("x")} ${cases[i].plan.kernel}`);
    const rec = await check(device, cases[i], 1000 + 17 * i);
    result.check.push(rec);
    if (!rec.ok) result.failures.push(rec);
    addRow(rec);
  }
  result.cases = cases.length;
  result.ok = cases.length > 0 && result.failures.length === 0;
}

// The floor of a shape: every copy kernel the library has, on X's bytes,
// timed like the ops; the fastest (by GPU timestamps where the browser has
// them, else on the CPU clock) is the floor, as in the native bench.
async function floorOf(device, copies, shape) {
  let best = null;
  const n = shape.reduce((a, d) => a * d, 1);
  for (const plan of copies) {
    const t = await timePlan(device, plan, { X: normal(3, n, 0, 1) }, 10);
    const us = t.gpu_us ?? t.cpu_us;
    if (best === null || us < best.us) best = { us, gpu: t.gpu_us !== null, kernel: plan.kernel };
  }
  return best;
}

async function runBench(device, bench, floorPlans) {
  result.bench = [];
  const floors = new Map();
  for (const b of bench) {
    const key = b.shape.join("x");
    if (!floors.has(key)) {
      log(`bench: the copy floor of ${key}`);
      floors.set(key, await floorOf(device, floorPlans[key], b.shape));
    }
    const floor = floors.get(key);
    log(`bench ${b.op} ${key}`);
    const inp = inputsOf(b, 7);
    const t = await timePlan(device, b.plan, inp, 10);
    const driver = await timeCopy(device, b.copy_bytes, 10);
    const opUs = floor.gpu ? t.gpu_us : t.cpu_us;
    const row = {
      op: b.op,
      shape: b.shape,
      kernel: b.plan.kernel,
      clock: floor.gpu ? "gpu timestamps" : "cpu",
      op_us: opUs,
      op_cpu_us: t.cpu_us,
      copy_kernel: floor.kernel,
      copy_us: floor.us,
      driver_copy_cpu_us: driver,
      ratio: opUs / floor.us,
      gbps: b.moved_bytes / (opUs * 1e3),
      copy_gbps: (2 * b.copy_bytes) / (floor.us * 1e3),
    };
    result.bench.push(row);
  }
  drawChart(result.bench);
}

function drawChart(rows) {
  const svg = $("chart");
  const w = 720;
  const bar = 16;
  const h = rows.length * (2 * bar + 14) + 30;
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("height", h);
  const top = Math.max(1e-9, ...rows.map((r) => Math.max(r.gbps, r.copy_gbps)));
  let s = "";
  rows.forEach((r, i) => {
    const y = 10 + i * (2 * bar + 14);
    const len = (v) => (v / top) * (w - 330);
    s += `<text x="0" y="${y + bar}" font-size="12">${r.op} ${r.shape.join("x")}</text>`;
    s += `<rect x="230" y="${y}" width="${len(r.gbps)}" height="${bar - 2}" fill="#3a7bd5"/>`;
    s += `<text x="${235 + len(r.gbps)}" y="${y + bar - 4}" font-size="11">${r.gbps.toFixed(2)} GB/s (${r.ratio.toFixed(2)}× copy)</text>`;
    s += `<rect x="230" y="${y + bar}" width="${len(r.copy_gbps)}" height="${bar - 2}" fill="#999"/>`;
    s += `<text x="${235 + len(r.copy_gbps)}" y="${y + 2 * bar - 4}" font-size="11">copy ${r.copy_gbps.toFixed(2)} GB/s (${r.copy_kernel})</text>`;
  });
  svg.innerHTML = s;
}

function offerDownload() {
  const blob = new Blob([JSON.stringify(result, null, 2)], { type: "application/json" });
  const a = $("download");
  a.href = URL.createObjectURL(blob);
  a.download = "wgpu-norm-result.json";
  a.hidden = false;
}

async function main() {
  const auto = new URLSearchParams(location.search).get("auto") === "1";
  let device;
  try {
    const opened = await openDevice();
    device = opened.device;
    const desc = describeAdapter(opened.adapter, device);
    result.adapter = desc;
    $("adapter").textContent = JSON.stringify(desc, null, 2);
    log("asking the library for this adapter's plans…");
    const plans = await post("/plans", desc);
    result.target = plans.target;
    $("run-check").onclick = async () => {
      await runCheck(device, plans.cases);
      log(`check: ${result.cases} cases, ${result.failures.length} failed`);
      offerDownload();
    };
    $("run-bench").onclick = async () => {
      await runBench(device, plans.bench, plans.floors);
      log("bench done");
      offerDownload();
    };
    $("run-check").disabled = false;
    $("run-bench").disabled = false;
    log(`ready: ${plans.cases.length} check cases, ${plans.bench.length} bench shapes`);
    if (auto) {
      await runCheck(device, plans.cases);
      await runBench(device, plans.bench, plans.floors);
      log(`done: ${result.cases} cases, ${result.failures.length} failed`);
      offerDownload();
    }
  } catch (e) {
    result.ok = false;
    result.error = String(e.message || e);
    log(`error: ${result.error}`);
  }
  result.timing =
    "bench times are medians of 10 submissions; `clock` says which: the passes' GPU timestamps where the " +
    "browser has timestamp-query (as coarse as the browser makes them), else the CPU clock (submit to " +
    "onSubmittedWorkDone, performance.now: 100 µs in Chrome). The floor is the fastest of the library's copy " +
    "kernels on X's bytes; driver_copy_cpu_us is copyBufferToBuffer on the CPU clock";
  if (auto) {
    console.log("wgpu-norm result: " + JSON.stringify(result));
  }
}

main();
