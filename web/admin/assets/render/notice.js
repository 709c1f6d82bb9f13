// The status line under the header: one message at a time, hidden after a while.

import { show } from "./dom.js";

/** notifier returns notify(message, kind) for the notice element node. */
export function notifier(node) {
  let timer = 0;
  return (message, kind = "ok") => {
    clearTimeout(timer);
    node.dataset.kind = kind;
    node.textContent = message;
    show(node, true);
    timer = setTimeout(() => show(node, false), kind === "error" ? 10000 : 5000);
  };
}
