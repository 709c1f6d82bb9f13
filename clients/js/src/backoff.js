// Reconnection delays: exponential backoff with full jitter (a uniformly random delay between 0
// and min(cap, base * 2^attempt)), so that clients dropped together do not come back together.

export const DEFAULT_BACKOFF = Object.freeze({ base: 1000, cap: 30000 });

/**
 * @param {number} attempt 0 for the first retry after a success
 * @param {{base?: number, cap?: number, random?: () => number}} [options]
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, { base = DEFAULT_BACKOFF.base, cap = DEFAULT_BACKOFF.cap, random = Math.random } = {}) {
  const n = Math.max(0, Math.floor(attempt));
  // 2 ** 1024 is Infinity; min() keeps the ceiling finite.
  const ceiling = Math.min(cap, base * 2 ** Math.min(n, 60));
  return Math.floor(random() * ceiling);
}
