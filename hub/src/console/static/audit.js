// The audit log page: GET /api/audit (a room's, or all for an admin), newest first.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const room = document.querySelector("main").dataset.room;
  const body = document.querySelector("#audit tbody");
  const more = document.getElementById("more");
  let before = null;
  async function load() {
    const q = new URLSearchParams();
    if (room) q.set("room", room);
    if (before) q.set("before", before);
    const r = await invigil.api("GET", "/api/audit?" + q);
    for (const e of r.entries) {
      const d = Object.entries(e.detail || {}).map(([k, v]) => `${k}: ${typeof v === "string" ? v : JSON.stringify(v)}`).join(", ");
      body.append(invigil.el("tr", { class: "audit-row", "data-action": e.action },
        invigil.el("td", { text: invigil.datetime(e.at) }), invigil.el("td", { text: e.actor }),
        invigil.el("td", { text: e.action }), invigil.el("td", { text: e.room || "" }), invigil.el("td", { text: d })));
      before = e.id;
    }
    more.hidden = r.entries.length < 200;
  }
  more.addEventListener("click", load);
  load().catch((e) => body.append(invigil.el("tr", {}, invigil.el("td", { class: "error", text: e.message }))));
});
