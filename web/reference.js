// The page's own f64 reference: LayerNorm and RMSNorm, forward and
// backward, written from their definitions (ONNX LayerNormalization-17 and
// RMSNormalization-23, biased variance), independently of the Rust one, so
// that the browser check has a second oracle.

// Seeded normal values: mulberry32 and Box–Muller.
export function normal(seed, n, mean, std) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(next(), 1e-12);
    const v = next();
    const r = Math.sqrt(-2 * Math.log(u));
    out[i] = mean + std * r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = mean + std * r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

// Per row: mean (0 for RMSNorm) and rstd = 1/sqrt(var + eps), or
// 1/sqrt(mean(x²) + eps) for RMSNorm, in f64.
export function rowStats(x, cols, eps, rms) {
  const rows = x.length / cols;
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += x[r * cols + c];
    const m = rms ? 0 : s / cols;
    let q = 0;
    for (let c = 0; c < cols; c++) {
      const d = x[r * cols + c] - m;
      q += d * d;
    }
    mean[r] = m;
    rstd[r] = 1 / Math.sqrt(q / cols + eps);
  }
  return { mean, rstd };
}

// y = (x - mean) * rstd * gamma + beta.
export function forward(x, cols, gamma, beta, eps, rms) {
  const { mean, rstd } = rowStats(x, cols, eps, rms);
  const y = new Float64Array(x.length);
  let xhatMax = 0;
  for (let i = 0; i < x.length; i++) {
    const r = Math.floor(i / cols);
    const c = i % cols;
    const xhat = (x[i] - mean[r]) * rstd[r];
    xhatMax = Math.max(xhatMax, Math.abs(xhat));
    y[i] = xhat * (gamma ? gamma[c] : 1) + (beta ? beta[c] : 0);
  }
  return { y, mean, rstd, xhatMax };
}

// dx, dgamma, dbeta of L = Σ y·dy, with g = dy·gamma and x̂ as above:
//   LayerNorm  dx = rstd (g − mean(g) − x̂ mean(g x̂))
//   RMSNorm    dx = rstd (g − x̂ mean(g x̂))
//   dgamma = Σ_rows dy x̂, dbeta = Σ_rows dy.
// Also the scales the tolerances are stated against.
export function backward(x, dy, cols, gamma, eps, rms) {
  const rows = x.length / cols;
  const { mean, rstd } = rowStats(x, cols, eps, rms);
  const dx = new Float64Array(x.length);
  const dgamma = new Float64Array(cols);
  const dbeta = new Float64Array(cols);
  const dgammaAbs = new Float64Array(cols);
  const dbetaAbs = new Float64Array(cols);
  let dxScale = 0;
  for (let r = 0; r < rows; r++) {
    let sg = 0;
    let sgx = 0;
    let gMax = 0;
    let xMax = 0;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const g = dy[i] * (gamma ? gamma[c] : 1);
      const xhat = (x[i] - mean[r]) * rstd[r];
      sg += g;
      sgx += g * xhat;
      gMax = Math.max(gMax, Math.abs(g));
      xMax = Math.max(xMax, Math.abs(xhat));
      dgamma[c] += dy[i] * xhat;
      dbeta[c] += dy[i];
      dgammaAbs[c] += Math.abs(dy[i] * xhat);
      dbetaAbs[c] += Math.abs(dy[i]);
    }
    const mg = rms ? 0 : sg / cols;
    const mgx = sgx / cols;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const g = dy[i] * (gamma ? gamma[c] : 1);
      const xhat = (x[i] - mean[r]) * rstd[r];
      dx[i] = rstd[r] * (g - mg - xhat * mgx);
    }
    dxScale = Math.max(dxScale, rstd[r] * (gMax + Math.abs(mg) + xMax * Math.abs(mgx)));
  }
  return {
    dx,
    dgamma,
    dbeta,
    dxScale,
    dgammaScale: Math.max(...dgammaAbs),
    dbetaScale: Math.max(...dbetaAbs),
  };
}

// Largest |got - want| (NaN matching NaN counts as equal).
export function maxError(got, want) {
  let e = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    if (Number.isNaN(g) && Number.isNaN(w)) continue;
    const d = Math.abs(g - w);
    if (!(d <= e)) e = Number.isNaN(d) ? Infinity : d;
  }
  return e;
}

export function maxAbs(v) {
  let m = 0;
  for (const a of v) m = Math.max(m, Math.abs(a));
  return m;
}
