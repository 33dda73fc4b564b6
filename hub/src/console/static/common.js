// Shared by every console page: JSON requests with clear errors, the
// logout button, and small DOM helpers (text only: data never becomes HTML).
"use strict";
const invigil = {
  async api(method, path, body) {
    const opts = { method, headers: {}, credentials: "same-origin" };
    if (body !== undefined) { opts.headers["content-type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(path, opts);
    if (r.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); throw new Error("not logged in"); }
    const text = await r.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
    if (!r.ok) throw new Error((json && json.error) || `${r.status} ${r.statusText}`);
    return json;
  },
  el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  },
  time(ts) { return ts ? new Date(ts).toLocaleTimeString() : ""; },
  datetime(ts) { return ts ? new Date(ts).toLocaleString() : ""; },
  secs(s) { s = Math.round(s); return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`; },
};
document.addEventListener("DOMContentLoaded", () => {
  const b = document.getElementById("logout");
  if (b) b.addEventListener("click", async () => {
    try { await invigil.api("POST", "/api/logout"); } finally { location.href = "/login"; }
  });
});
