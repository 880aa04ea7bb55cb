/**
 * Prints what the adapters of Deno's WebGPU and of Dawn (npm `webgpu`) offer: features, the
 * subgroup sizes, and Dawn's subgroup-matrix configurations where it lists them. For issue 13's
 * compute-bound cases (shader-f16 packed math, subgroup matrices).
 *
 * Usage: deno run -A --unstable-webgpu bench/probe_features.ts
 */

async function describe(name: string, gpu: GPU | undefined): Promise<void> {
  const adapter = await gpu?.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    console.log(`${name}: no adapter`);
    return;
  }
  const info = adapter.info as unknown as Record<string, unknown>;
  console.log(`${name}: ${info.vendor} ${info.architecture} ${info.device} ${info.description}`);
  console.log(`  features: ${[...adapter.features].sort().join(", ")}`);
  for (const key of ["subgroupMinSize", "subgroupMaxSize"]) {
    if (key in info) console.log(`  ${key}: ${JSON.stringify(info[key])}`);
  }
  // Each configuration's fields are getters: copy them out.
  const configs = (info.subgroupMatrixConfigs ?? []) as Record<string, unknown>[];
  for (const c of configs) {
    const fields = ["componentType", "resultComponentType", "M", "N", "K"].map((k) =>
      `${k} ${c[k]}`
    );
    console.log(`  subgroup matrix: ${fields.join(", ")}`);
  }
  // Features a device can be asked for although the adapter does not list them.
  for (const wanted of [["shader-f16"], ["chromium-experimental-subgroup-matrix", "shader-f16"]]) {
    try {
      const device = await adapter.requestDevice({
        requiredFeatures: wanted as GPUFeatureName[],
      });
      console.log(`  device with ${wanted.join(" + ")}: ${[...device.features].sort().join(", ")}`);
      device.destroy();
    } catch (e) {
      console.log(`  device with ${wanted.join(" + ")}: refused (${(e as Error).message})`);
    }
  }
  console.log(
    `  limits: workgroup storage ${adapter.limits.maxComputeWorkgroupStorageSize}, ` +
      `invocations ${adapter.limits.maxComputeInvocationsPerWorkgroup}`,
  );
}

await describe("deno webgpu", navigator.gpu);
try {
  const { create } = await import("webgpu");
  await describe(
    "dawn",
    create(["enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia"]) as GPU,
  );
} catch (e) {
  console.log(`dawn: ${e}`);
}
