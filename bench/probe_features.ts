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
  for (const key of ["subgroupMinSize", "subgroupMaxSize", "subgroupMatrixConfigs"]) {
    if (key in info) console.log(`  ${key}: ${JSON.stringify(info[key])}`);
  }
  console.log(
    `  limits: workgroup storage ${adapter.limits.maxComputeWorkgroupStorageSize}, ` +
      `invocations ${adapter.limits.maxComputeInvocationsPerWorkgroup}`,
  );
}

await describe("deno webgpu", navigator.gpu);
try {
  const { create } = await import("webgpu");
  await describe("dawn", create(["enable-dawn-features=allow_unsafe_apis"]) as GPU);
} catch (e) {
  console.log(`dawn: ${e}`);
}
