export { connect, EVENTS, StreamgateError } from "./src/client.js";
export { createParser } from "./src/sse.js";
export { backoffDelay, DEFAULT_BACKOFF } from "./src/backoff.js";
