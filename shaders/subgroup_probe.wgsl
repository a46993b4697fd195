// The subgroup size the adapter really runs: one workgroup writes it.
// wgpu reports a range (4..64 on Metal, 4..128 on Vulkan drivers without
// subgroup-size control), whatever the hardware runs; the plan sizes
// subgroup-per-row workgroups from what this sees.

override WG: u32 = 64u;

@group(0) @binding(0) var<storage, read_write> size_out: array<u32>;

@compute @workgroup_size(WG)
fn probe(@builtin(subgroup_size) size: u32, @builtin(local_invocation_index) lid: u32) {
    if (lid == 0u) {
        size_out[0] = size;
    }
}
