// The room view: one WebSocket (/api/rooms/{room}/live) gives a snapshot,
// then the tiles, exam and alerts that changed. Tiles sit where the roster
// places them (row, col), in a plain grid otherwise. Reconnects with backoff.
// window.consoleStats counts tile updates (the 200-desk bench reads it).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const room = document.querySelector("main").dataset.room;
  const grid = document.getElementById("grid");
  const alertsEl = document.getElementById("alerts");
  const msg = document.getElementById("msg");
  const conn = document.getElementById("conn");
  const tiles = new Map();
  let exam = null;
  const stats = (window.consoleStats = { updates: {}, alertSeen: {}, messages: 0 });
  const LABEL = { in_session: "in session", alert: "ALERT", camera: "camera lost or covered", no_session: "no session", offline: "offline" };

  function tileEl(t) {
    let e = tiles.get(t.desk);
    if (!e) {
      e = invigil.el("div", { class: "tile", "data-desk": t.desk },
        invigil.el("div", { class: "desk" }), invigil.el("div", { class: "student" }),
        invigil.el("div", { class: "score" }), invigil.el("div", { class: "state" }), invigil.el("div", { class: "reasons" }));
      tiles.set(t.desk, e);
      grid.append(e);
    }
    return e;
  }

  function render(t) {
    const e = tileEl(t);
    e.className = "tile " + t.state;
    e.dataset.state = t.state;
    e.dataset.score = t.score === null || t.score === undefined ? "" : String(t.score);
    e.querySelector(".desk").textContent = t.desk;
    e.querySelector(".student").textContent = t.student || "—";
    e.querySelector(".score").textContent = t.score === null || t.score === undefined ? "–" : String(t.score);
    e.querySelector(".state").textContent = LABEL[t.state] || t.state;
    e.querySelector(".reasons").textContent = (t.reasons || []).join(", ");
    // Placed by the roster (CSSOM styles are allowed by the CSP; attributes are not).
    if (t.row && t.col) { e.style.gridRow = String(t.row); e.style.gridColumn = String(t.col); }
    else { e.style.gridRow = ""; e.style.gridColumn = ""; }
    const now = performance.now();
    const s = stats.updates[t.desk] || (stats.updates[t.desk] = { n: 0, last: null, maxGap: 0 });
    if (s.last !== null) s.maxGap = Math.max(s.maxGap, now - s.last);
    s.n += 1; s.last = now;
    if (t.state === "alert" && t.incident && t.incident.id && !stats.alertSeen[t.incident.id]) {
      stats.alertSeen[t.incident.id] = { desk: t.desk, at: Date.now() };
    }
  }

  function renderExam(x) {
    exam = x;
    const box = document.getElementById("exam");
    box.textContent = "";
    const start = document.getElementById("start");
    const stop = document.getElementById("stop");
    const review = document.getElementById("review");
    if (!x) {
      box.append(invigil.el("span", { text: "No exam yet: import a roster (CSV desk,student_id[,row,col])." }));
      start.disabled = stop.disabled = true; review.hidden = true;
      return;
    }
    box.dataset.state = x.state;
    box.dataset.exam = String(x.id);
    box.append(invigil.el("span", { class: "examstate " + x.state, text: `Exam ${x.id}${x.name ? " " + x.name : ""}: ${x.state}` }));
    if (x.started_at) box.append(invigil.el("span", { text: ` · started ${invigil.time(x.started_at)}` }));
    if (x.stopped_at) box.append(invigil.el("span", { text: ` · stopped ${invigil.time(x.stopped_at)}` }));
    box.append(invigil.el("span", { class: "retention", text: x.purged_at
      ? ` · clips and scores deleted ${invigil.datetime(x.purged_at)}`
      : x.delete_at ? ` · clips and scores deleted on ${invigil.datetime(x.delete_at)}`
      : ` · clips and scores kept ${x.retention_days} days after the exam stops` }));
    start.disabled = x.state !== "ready";
    stop.disabled = x.state === "stopped";
    review.hidden = false;
    review.href = `/console/exams/${x.id}`;
  }

  function renderAlerts(list) {
    alertsEl.textContent = "";
    for (const a of list) {
      const when = invigil.time(a.started);
      const text = `${when} ${a.desk}${a.student ? " (" + a.student + ")" : ""}: ${(a.reasons || []).join(", ") || "low score"}` +
        (a.open ? " — open" : a.ended ? ` — ${invigil.secs((new Date(a.ended) - new Date(a.started)) / 1000)}` : "");
      const item = invigil.el("li", { class: "alert-item" + (a.open ? " open" : ""), "data-key": a.key, "data-desk": a.desk, "data-id": a.id });
      if (a.id && exam) item.append(invigil.el("a", { href: `/console/exams/${exam.id}#incident-${a.id}`, text }));
      else item.append(invigil.el("span", { text }));
      alertsEl.append(item);
      if (!stats.alertSeen[a.key]) stats.alertSeen[a.key] = { desk: a.desk, at: Date.now() };
    }
  }

  let backoff = 500;
  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/api/rooms/${encodeURIComponent(room)}/live`);
    ws.onopen = () => { conn.textContent = "live"; conn.className = "conn up"; backoff = 500; };
    ws.onmessage = (ev) => {
      stats.messages += 1;
      const m = JSON.parse(ev.data);
      if (m.type === "snapshot") {
        grid.textContent = ""; tiles.clear();
        m.desks.forEach(render); renderExam(m.exam); renderAlerts(m.alerts);
      } else if (m.type === "desks") m.desks.forEach(render);
      else if (m.type === "exam") renderExam(m.exam);
      else if (m.type === "alerts") renderAlerts(m.alerts);
    };
    ws.onclose = () => {
      conn.textContent = "disconnected: reconnecting…"; conn.className = "conn down";
      setTimeout(connect, backoff); backoff = Math.min(backoff * 2, 10000);
    };
  }
  connect();

  async function act(label, fn) {
    msg.textContent = "";
    msg.className = "msg";
    try { msg.textContent = await fn(); } catch (e) { msg.textContent = `${label}: ${e.message}`; msg.className = "msg error"; }
  }
  document.getElementById("roster").addEventListener("change", (ev) => act("Roster", async () => {
    const file = ev.target.files[0];
    if (!file) return "";
    const text = await file.text();
    const days = Number(document.getElementById("retention").value) || 30;
    const x = await invigil.api("POST", "/api/exams", { room, roster_csv: text, retention_days: days });
    ev.target.value = "";
    renderExam({ id: x.id, state: x.state, name: x.name, retention_days: days });
    return `Exam ${x.id} created with ${x.desks.length} desks: start it when the room is ready.`;
  }));
  document.getElementById("start").addEventListener("click", () => act("Start", async () => {
    const x = await invigil.api("POST", `/api/exams/${exam.id}/start`);
    stats.startedAt = Date.now();
    return `Exam ${x.id} started.`;
  }));
  document.getElementById("stop").addEventListener("click", () => act("Stop", async () => {
    if (!confirm("Stop the exam for every desk?")) return "";
    const x = await invigil.api("POST", `/api/exams/${exam.id}/stop`);
    return `Exam ${x.id} stopped.`;
  }));
});
