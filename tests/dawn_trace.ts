/**
 * Stamps Dawn's native calls on stderr (`LEAN_TEST_TRACE=1`, see tests/backends.ts). On the
 * H200 a Dawn test run stopped inside a decoder's opening with no timer firing: the main thread
 * was blocked in a native call (bench/notes.md, session 31). Each call of the patched methods
 * writes a line before it enters Dawn and one when it returns (and one when a returned promise
 * settles), synchronously, so the last line of a blocked run names the call that blocks.
 *
 * @module
 */

import { loadDawn } from "../dawn.ts";

/** The methods stamped, per object: the ones a decoder's opening, decode and disposal call. */
const METHODS = {
  gpu: ["requestAdapter"],
  adapter: ["requestDevice"],
  device: [
    "createShaderModule",
    "createComputePipeline",
    "createComputePipelineAsync",
    "createBindGroupLayout",
    "createPipelineLayout",
    "createBuffer",
    "createBindGroup",
    "createCommandEncoder",
    "createQuerySet",
    "destroy",
  ],
  queue: ["submit", "onSubmittedWorkDone", "writeBuffer"],
  buffer: ["mapAsync", "destroy"],
} as const;

const t0 = performance.now();
const stamp = (line: string) =>
  console.error(`[dawn ${((performance.now() - t0) / 1000).toFixed(3)}s] ${line}`);

/** Replaces `proto[name]` by a stamped call of it (once per prototype). */
function patch(proto: Record<string, unknown>, owner: string, name: string): void {
  const original = proto[name];
  if (typeof original !== "function" || (original as { traced?: boolean }).traced) return;
  const wrapped = function (this: unknown, ...args: unknown[]) {
    const label = `${owner}.${name}`;
    stamp(`-> ${label}`);
    const result = original.apply(this, args);
    stamp(`<- ${label}`);
    if (result instanceof Promise) {
      result.then(() => stamp(`ok ${label}`), (e) => stamp(`rejected ${label}: ${e}`));
    }
    return result;
  };
  (wrapped as { traced?: boolean }).traced = true;
  proto[name] = wrapped;
}

const protoOf = (o: object) => Object.getPrototypeOf(o) as Record<string, unknown>;

/** Patches Dawn's GPU, adapter, device, queue and buffer prototypes; returns once done. */
export async function traceDawnCalls(): Promise<void> {
  const gpu = await loadDawn();
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return;
  const device = await adapter.requestDevice();
  const buffer = device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ });
  const objects = { gpu, adapter, device, queue: device.queue, buffer };
  for (const [owner, names] of Object.entries(METHODS)) {
    const proto = protoOf(objects[owner as keyof typeof objects]);
    for (const name of names) patch(proto, owner, name);
  }
  buffer.destroy();
  device.destroy();
  stamp("tracing Dawn's native calls");
}
