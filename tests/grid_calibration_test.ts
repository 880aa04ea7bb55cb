/**
 * The grid calibration (`calibrateGrid`) against a fake device that runs 132 workgroups at once,
 * each wave taking 1 ms: it finds the largest probe size within one wave. A sweep that starts at
 * a low clock (every dispatch twice as slow for the first 30 ms) inflates the grid, and one slowed
 * in its middle shrinks it, unless every size is swept twice and takes its least time
 * (`sweeps: 2`, as the tiled class does). At 1.6x (the matrix classes) it finds two per
 * multiprocessor where they share one at 1.4x one's time.
 */

import assert from "node:assert/strict";
import { calibrateGrid } from "../src/gpu/device_profile.ts";
import { fakeTimedDevice } from "./fake_timed_device.ts";

/** Workgroups the fake device runs at once. */
const RESIDENT = 132;

/**
 * A device whose dispatch of `n` workgroups takes one ms per wave, `slow`x from `fromMs` until
 * `untilMs`.
 */
function device(slow = 1, untilMs = 0, fromMs = 0): GPUDevice {
  return fakeTimedDevice({
    passMs: 0,
    dispatchMs: (n, clockMs) =>
      Math.ceil(n / RESIDENT) * (clockMs >= fromMs && clockMs < untilMs ? slow : 1),
  });
}

const oneWave = (grid: number | undefined) =>
  grid !== undefined && grid <= RESIDENT && grid > RESIDENT / 1.07;

const probe = (pass: GPUComputePassEncoder, n: number) => pass.dispatchWorkgroups(n);

Deno.test("calibrateGrid finds the largest probe size within one wave", async () => {
  for (const tolerance of [1.25, 1.5]) {
    const grid = await calibrateGrid(device(), probe, { maxSize: 1024, tolerance });
    assert.ok(oneWave(grid), `grid ${grid}`);
  }
});

Deno.test("calibrateGrid's second sweep undoes a slow start", async () => {
  // Timed at half speed, one workgroup took 2 ms: within 1.5x of that, 3 waves at full speed fit.
  const inflated = await calibrateGrid(device(2, 30), probe, { maxSize: 1024 });
  assert.ok(inflated !== undefined && inflated > 2 * RESIDENT, `grid ${inflated}`);
  const grid = await calibrateGrid(device(2, 30), probe, { maxSize: 1024, sweeps: 2 });
  assert.ok(oneWave(grid), `grid ${grid}`);
});

Deno.test("calibrateGrid's second sweep undoes a slow stretch in the first", async () => {
  // Sizes of about 82-132 workgroups are timed 46-100 ms into the first sweep: at half speed
  // they exceed 1.25x one workgroup's time, and the grid stops below them (Dawn's tiled class
  // calibrated to 87 once in session 27, where 131 ran MLA 1.4x faster).
  const shrunk = await calibrateGrid(device(2, 100, 46), probe, { maxSize: 1024, tolerance: 1.25 });
  assert.ok(shrunk !== undefined && shrunk < RESIDENT / 1.5, `grid ${shrunk}`);
  const grid = await calibrateGrid(device(2, 100, 46), probe, {
    maxSize: 1024,
    tolerance: 1.25,
    sweeps: 2,
  });
  assert.ok(oneWave(grid), `grid ${grid}`);
});

Deno.test("calibrateGrid at 1.6x takes two workgroups per multiprocessor that share it at 1.4x", async () => {
  // Two workgroups share a multiprocessor at 1.4x one's time (the matrix kernel on the H200,
  // session 50); a third waits for a slot. The 1.25x rule stops at one per multiprocessor.
  const shared = fakeTimedDevice({
    passMs: 0,
    dispatchMs: (n) => {
      const perMP = Math.ceil(n / RESIDENT);
      return Math.ceil(perMP / 2) * (perMP === 1 ? 1 : 1.4);
    },
  });
  const narrow = await calibrateGrid(shared, probe, { maxSize: 1024, tolerance: 1.25 });
  assert.ok(oneWave(narrow), `grid ${narrow}`);
  const grid = await calibrateGrid(shared, probe, { maxSize: 1024, tolerance: 1.6, sweeps: 2 });
  assert.ok(grid !== undefined && grid <= 2 * RESIDENT && grid > (2 * RESIDENT) / 1.07, `${grid}`);
  // Where a second workgroup only queues behind the first (a wave each), one wave's size.
  const waves = await calibrateGrid(device(), probe, { maxSize: 1024, tolerance: 1.6, sweeps: 2 });
  assert.ok(oneWave(waves), `grid ${waves}`);
});
