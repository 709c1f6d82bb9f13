import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay } from "../src/backoff.js";

test("the ceiling doubles from base up to cap", { timeout: 5_000 }, () => {
  const top = (attempt) => backoffDelay(attempt, { base: 1000, cap: 30000, random: () => 0.999999 });
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 50, 5000].map(top), [999, 1999, 3999, 7999, 15999, 29999, 29999, 29999, 29999]);
});

test("full jitter: anywhere from 0 to the ceiling", { timeout: 5_000 }, () => {
  assert.equal(backoffDelay(3, { random: () => 0 }), 0);
  assert.equal(backoffDelay(3, { base: 100, random: () => 0.5 }), 400);
  let min = Infinity;
  let max = 0;
  for (let i = 0; i < 2000; i++) {
    const d = backoffDelay(10);
    assert.ok(Number.isInteger(d) && d >= 0 && d < 30000, `delay ${d}`);
    min = Math.min(min, d);
    max = Math.max(max, d);
  }
  assert.ok(min < 3000 && max > 27000, `spread ${min}..${max}`);
});

test("defaults to base 1 s and cap 30 s; bad attempts count as 0", { timeout: 5_000 }, () => {
  assert.equal(backoffDelay(0, { random: () => 0.5 }), 500);
  assert.equal(backoffDelay(-3, { random: () => 0.5 }), 500);
  assert.equal(backoffDelay(100, { random: () => 0.5 }), 15000);
});
