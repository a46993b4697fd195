// Runs a plan that `wgpu-norm export` (or `wgpu-norm web`'s /plan) made, on
// a browser's WebGPU. It holds no normalisation logic: buffers, modules,
// pipelines, bindings, uniform bytes and workgroup counts all come from the
// plan, which the library made for this device's features and limits.

const FEATURES = ["subgroups", "shader-f16", "timestamp-query"];
const LIMITS = [
  "maxStorageBuffersPerShaderStage",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupsPerDimension",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupStorageSize",
  "minStorageBufferOffsetAlignment",
  "minUniformBufferOffsetAlignment",
];

// A device with every optional feature the kernels use that the adapter
// has, and the adapter's own limits for those the plan reads.
export async function openDevice() {
  if (!navigator.gpu) throw new Error("this browser has no WebGPU (navigator.gpu is missing)");
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("WebGPU gave no adapter");
  const requiredFeatures = FEATURES.filter((f) => adapter.features.has(f));
  const requiredLimits = {};
  for (const name of LIMITS) {
    if (name.startsWith("min")) continue; // alignments: keep the defaults
    requiredLimits[name] = adapter.limits[name];
  }
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  return { adapter, device };
}

// What the plan needs to know of the device: its features, limits and
// subgroup sizes (what `wgpu_norm::export::Target::from_json` reads).
export function describeAdapter(adapter, device) {
  const info = adapter.info || {};
  const limits = {};
  for (const name of LIMITS) limits[name] = device.limits[name];
  return {
    features: FEATURES.filter((f) => device.features.has(f)),
    limits,
    info: {
      vendor: info.vendor || "",
      architecture: info.architecture || "",
      description: info.description || "",
      subgroupMinSize: info.subgroupMinSize || 0,
      subgroupMaxSize: info.subgroupMaxSize || 0,
      isFallbackAdapter: !!(info.isFallbackAdapter || adapter.isFallbackAdapter),
    },
  };
}

// f32 -> IEEE half bits (round to nearest even), and back.
const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);
export function toHalf(v) {
  f32buf[0] = v;
  const x = u32buf[0];
  const sign = (x >>> 16) & 0x8000;
  let exp = ((x >>> 23) & 0xff) - 127 + 15;
  let mant = x & 0x7fffff;
  if (((x >>> 23) & 0xff) === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  if (exp >= 0x1f) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - exp;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h += 1;
    return sign | h;
  }
  let h = (exp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h += 1;
  return sign | h;
}
export function fromHalf(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function bytesOf(values, dtype, size) {
  const bytes = new Uint8Array(size);
  if (dtype === "f16") {
    const u16 = new Uint16Array(bytes.buffer);
    for (let i = 0; i < values.length; i++) u16[i] = toHalf(values[i]);
  } else {
    new Float32Array(bytes.buffer).set(values);
  }
  return bytes;
}

function valuesOf(bytes, dtype, count) {
  if (dtype === "f16") {
    const u16 = new Uint16Array(bytes.buffer, 0, count);
    return Float32Array.from(u16, fromHalf);
  }
  return new Float32Array(bytes.buffer.slice(0, count * 4));
}

// Builds everything once: buffers (inputs written from `inputs`, by their
// ONNX names), modules, pipelines and bind groups. Returns a runner whose
// `encode(encoder, timestamps)` records the plan's passes.
export function prepare(device, plan, inputs) {
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const buffers = plan.buffers.map((b) => {
    const size = Math.max(16, Math.ceil(b.size / 4) * 4);
    if (b.role === "uniform") {
      const buf = device.createBuffer({ size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      device.queue.writeBuffer(buf, 0, new Uint32Array(b.words));
      return buf;
    }
    const buf = device.createBuffer({ size, usage });
    if (b.role === "input") {
      const v = inputs[b.name];
      if (!v) throw new Error(`the plan needs input ${b.name}`);
      device.queue.writeBuffer(buf, 0, bytesOf(v, b.dtype, size));
    }
    return buf;
  });
  const modules = plan.modules.map((m) => device.createShaderModule({ code: m.wgsl }));
  const passes = plan.passes.map((pass) => ({
    label: pass.label,
    dispatches: pass.dispatches.map((d) => {
      const layout = device.createBindGroupLayout({
        entries: d.bindings.map((b) => ({
          binding: b.binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: b.type },
        })),
      });
      const pipeline = device.createComputePipeline({
        label: d.entry,
        layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
        compute: { module: modules[d.module], entryPoint: d.entry, constants: d.constants },
      });
      const group = device.createBindGroup({
        layout,
        entries: d.bindings.map((b) => ({
          binding: b.binding,
          resource: { buffer: buffers[b.buffer], offset: b.offset, size: b.size },
        })),
      });
      return { pipeline, group, workgroups: d.workgroups, name: d.name };
    }),
  }));
  return {
    buffers,
    // Records every pass; `writes(i)` gives a pass's timestampWrites (or undefined).
    encode(encoder, writes) {
      passes.forEach((p, i) => {
        const pass = encoder.beginComputePass({ label: p.label, timestampWrites: writes && writes(i) });
        for (const d of p.dispatches) {
          pass.setPipeline(d.pipeline);
          pass.setBindGroup(0, d.group);
          pass.dispatchWorkgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
        }
        pass.end();
      });
    },
    passCount: passes.length,
    // Reads the plan's outputs back, by name, as Float32Arrays.
    async read() {
      const outs = plan.buffers
        .map((b, i) => ({ b, i }))
        .filter(({ b }) => b.role === "output");
      const encoder = device.createCommandEncoder();
      const staging = outs.map(({ b, i }) => {
        const s = device.createBuffer({
          size: buffers[i].size,
          usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        });
        encoder.copyBufferToBuffer(buffers[i], 0, s, 0, buffers[i].size);
        return s;
      });
      device.queue.submit([encoder.finish()]);
      const result = {};
      for (let k = 0; k < outs.length; k++) {
        const { b } = outs[k];
        await staging[k].mapAsync(GPUMapMode.READ);
        const count = b.shape.reduce((a, d) => a * d, 1);
        result[b.name] = valuesOf(new Uint8Array(staging[k].getMappedRange().slice(0)), b.dtype, count);
        staging[k].unmap();
        staging[k].destroy();
      }
      return result;
    },
    destroy() {
      for (const b of buffers) b.destroy();
    },
  };
}

// Runs the plan once on `inputs` and returns its outputs; throws with
// WebGPU's message when a module or pipeline is refused.
export async function runPlan(device, plan, inputs) {
  device.pushErrorScope("validation");
  device.pushErrorScope("internal");
  device.pushErrorScope("out-of-memory");
  const run = prepare(device, plan, inputs);
  const encoder = device.createCommandEncoder();
  run.encode(encoder);
  device.queue.submit([encoder.finish()]);
  const errors = [];
  for (let i = 0; i < 3; i++) {
    const e = await device.popErrorScope();
    if (e) errors.push(e.message);
  }
  if (errors.length) {
    run.destroy();
    throw new Error(errors.join("\n"));
  }
  const outputs = await run.read();
  run.destroy();
  return outputs;
}

// Times the plan: median of `iters` submissions after a warm-up, on the CPU
// clock (submit to onSubmittedWorkDone), and with timestamp queries where
// the device has them. Browsers coarsen timestamps (Chrome rounds them to
// 100 µs unless its developer features are on): the GPU times are as
// coarse as that.
export async function timePlan(device, plan, inputs, iters) {
  const run = prepare(device, plan, inputs);
  const gpu = device.features.has("timestamp-query");
  let query, resolve, readback;
  if (gpu) {
    const count = 2 * run.passCount;
    query = device.createQuerySet({ type: "timestamp", count });
    resolve = device.createBuffer({ size: 8 * count, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    readback = device.createBuffer({ size: 8 * count, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }
  const cpu = [];
  const gpuTimes = [];
  for (let i = 0; i <= iters; i++) {
    const encoder = device.createCommandEncoder();
    run.encode(encoder, gpu ? (p) => ({ querySet: query, beginningOfPassWriteIndex: 2 * p, endOfPassWriteIndex: 2 * p + 1 }) : undefined);
    if (gpu) {
      encoder.resolveQuerySet(query, 0, 2 * run.passCount, resolve, 0);
      encoder.copyBufferToBuffer(resolve, 0, readback, 0, resolve.size);
    }
    const t0 = performance.now();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    const t1 = performance.now();
    if (i === 0) continue; // warm-up
    cpu.push((t1 - t0) * 1000);
    if (gpu) {
      await readback.mapAsync(GPUMapMode.READ);
      const ts = new BigInt64Array(readback.getMappedRange().slice(0));
      readback.unmap();
      let ns = 0;
      for (let p = 0; p < run.passCount; p++) ns += Number(ts[2 * p + 1] - ts[2 * p]);
      gpuTimes.push(ns / 1000);
    }
  }
  run.destroy();
  if (gpu) {
    query.destroy();
    resolve.destroy();
    readback.destroy();
  }
  const median = (a) => (a.length ? [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] : null);
  // (null, not 0, where the device has no timestamps)
  return { cpu_us: median(cpu), gpu_us: median(gpuTimes) };
}

// The floor: copyBufferToBuffer of `bytes`, one per submission, timed as
// `timePlan` times on the CPU clock (the same submission overhead as the
// op's; both as coarse as the browser's clock).
export async function timeCopy(device, bytes, iters) {
  const size = Math.max(16, Math.ceil(bytes / 4) * 4);
  const src = device.createBuffer({ size, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  const dst = device.createBuffer({ size, usage: GPUBufferUsage.COPY_DST });
  // Written first: WebGPU zero-initialises buffers lazily, and a copy from
  // one never written may be done as a clear.
  device.queue.writeBuffer(src, 0, new Uint8Array(size).fill(0x3f));
  const times = [];
  for (let i = 0; i <= iters; i++) {
    const encoder = device.createCommandEncoder();
    encoder.copyBufferToBuffer(src, 0, dst, 0, size);
    const t0 = performance.now();
    device.queue.submit([encoder.finish()]);
    await device.queue.onSubmittedWorkDone();
    if (i > 0) times.push((performance.now() - t0) * 1000);
  }
  src.destroy();
  dst.destroy();
  times.sort((x, y) => x - y);
  return times[Math.floor(times.length / 2)];
}
