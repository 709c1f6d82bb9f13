// The tenant's presence: members now on its busiest presence channels, with its totals.

import { fmtInt, plural } from "../format.js";
import { cell, h, setText, show, syncRows } from "./dom.js";

/** renderPresence shows GET /admin/api/tenants/{id}/presence. */
export function renderPresence(el, p) {
  const channels = p.channels || [];
  syncRows(el.presenceBody, channels, (c) => c.channel,
    () => h("tr", { role: "row" },
      h("th", { scope: "row", role: "rowheader" }, h("code")),
      cell("Members now", { class: "num" })),
    (tr, c) => {
      const [channel, members] = tr.cells;
      setText(channel.firstChild, c.channel);
      setText(members, fmtInt(c.members));
    });
  show(el.presenceEmpty, channels.length === 0);
  let summary = `${plural(p.presence_members, "member", "members")} on ${plural(p.presence_channels, "channel", "channels")} now; a user counts once per channel.`;
  if (p.truncated) summary += ` The ${fmtInt(channels.length)} with the most members are listed.`;
  setText(el.presenceSummary, summary);
}

export function clearPresence(el) {
  el.presenceBody.replaceChildren();
  show(el.presenceEmpty, false);
  setText(el.presenceSummary, "");
}
