// Which of the three views (login, overview, tenant) is on screen.

import { show } from "./dom.js";

export function showView(app, name) {
  app.state.view = name;
  for (const [k, node] of Object.entries(app.el.views)) show(node, k === name);
}
