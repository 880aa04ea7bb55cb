/**
 * The grid calibration (`calibrateGrid`) against a fake device that runs 132 workgroups at once,
 * each wave taking 1 ms: it finds the largest probe size within one wave, and a sweep that starts
 * at a low clock (every dispatch twice as slow for the first 30 ms) inflates the grid unless the
 * smallest sizes are timed again after the sweep (`baseAfter`).
 */

import assert from "node:assert/strict";
import { calibrateGrid } from "../src/gpu/device_profile.ts";
import { fakeTimedDevice } from "./fake_timed_device.ts";

/** Workgroups the fake device runs at once. */
const RESIDENT = 132;

/** A device whose dispatch of `n` workgroups takes one ms per wave, `slow`x before `untilMs`. */
function device(slow = 1, untilMs = 0): GPUDevice {
  return fakeTimedDevice({
    passMs: 0,
    dispatchMs: (n, clockMs) => Math.ceil(n / RESIDENT) * (clockMs < untilMs ? slow : 1),
  });
}

const probe = (pass: GPUComputePassEncoder, n: number) => pass.dispatchWorkgroups(n);

Deno.test("calibrateGrid finds the largest probe size within one wave", async () => {
  for (const tolerance of [1.25, 1.5]) {
    const grid = await calibrateGrid(device(), probe, { maxSize: 1024, tolerance });
    assert.ok(grid !== undefined && grid <= RESIDENT && grid > RESIDENT / 1.07, `grid ${grid}`);
  }
});

Deno.test("calibrateGrid times its smallest sizes again when asked, after a slow start", async () => {
  // Timed at half speed, one workgroup took 2 ms: within 1.5x of that, 3 waves at full speed fit.
  const inflated = await calibrateGrid(device(2, 30), probe, { maxSize: 1024 });
  assert.ok(inflated !== undefined && inflated > 2 * RESIDENT, `grid ${inflated}`);
  const grid = await calibrateGrid(device(2, 30), probe, { maxSize: 1024, baseAfter: true });
  assert.ok(grid !== undefined && grid <= RESIDENT && grid > RESIDENT / 1.07, `grid ${grid}`);
});
