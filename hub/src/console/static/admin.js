// The admin page: users and desks (GET/POST /api/admin/users, /api/admin/desks,
// POST /api/admin/desks/{desk}/revoke).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const E = invigil.el;
  async function load() {
    const u = await invigil.api("GET", "/api/admin/users");
    const ub = document.querySelector("#users tbody");
    ub.textContent = "";
    for (const x of u.users) ub.append(E("tr", {}, E("td", { text: x.name + (x.disabled ? " (disabled)" : "") }), E("td", { text: x.role }), E("td", { text: x.role === "admin" ? "all" : x.rooms.join(", ") })));
    const d = await invigil.api("GET", "/api/admin/desks");
    const db = document.querySelector("#desks tbody");
    db.textContent = "";
    for (const x of d.desks) {
      const b = x.enrolled ? E("button", { type: "button", text: "Revoke" }) : null;
      if (b) b.addEventListener("click", async () => {
        if (!confirm(`Revoke ${x.desk}? It disconnects at once and must be enrolled again.`)) return;
        await invigil.api("POST", `/api/admin/desks/${encodeURIComponent(x.desk)}/revoke`);
        await load();
      });
      db.append(E("tr", { "data-desk": x.desk }, E("td", { text: x.desk }), E("td", { text: x.room }), E("td", { text: x.enrolled ? "enrolled" : "revoked" }), E("td", {}, b)));
    }
  }
  function form(id, fn) {
    const f = document.getElementById(id);
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = f.querySelector(".msg");
      try { out.textContent = await fn(new FormData(f)); out.className = "msg"; f.reset(); await load(); }
      catch (e) { out.textContent = e.message; out.className = "msg error"; }
    });
  }
  form("adduser", async (f) => {
    const rooms = String(f.get("rooms") || "").split(",").map((r) => r.trim()).filter(Boolean);
    await invigil.api("POST", "/api/admin/users", { name: f.get("name"), role: f.get("role"), rooms, password: f.get("password") });
    return `User ${f.get("name")} added.`;
  });
  form("adddesk", async (f) => {
    const r = await invigil.api("POST", "/api/admin/desks", { desk: f.get("desk"), room: f.get("room"), rotate: f.get("rotate") === "on" });
    document.getElementById("token").textContent = r.token;
    return `Desk ${r.desk} enrolled in ${r.room}; its token:`;
  });
  load().catch((e) => document.querySelector("main").append(E("p", { class: "error", text: e.message })));
});
