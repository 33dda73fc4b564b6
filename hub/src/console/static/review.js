// The review page: sessions by priority (GET /api/exams/{id}/review); for
// the chosen session the score plot (GET /api/sessions/{id}/scores, already
// downsampled by the hub), its incidents, each clip in a <video>, and the
// decision form (POST /api/incidents/{id}/review).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const examId = document.querySelector("main").dataset.exam;
  const NS = "http://www.w3.org/2000/svg";
  let data = null;
  let current = null;
  let playing = null;

  function svg(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  async function load() {
    data = await invigil.api("GET", `/api/exams/${examId}/review`);
    const x = data.exam;
    document.getElementById("examinfo").textContent =
      `Room ${x.room} · ${x.state}${x.started_at ? " · started " + invigil.datetime(x.started_at) : ""}` +
      `${x.stopped_at ? " · stopped " + invigil.datetime(x.stopped_at) : ""}`;
    document.getElementById("retentioninfo").textContent = x.purged_at
      ? `Clips and scores were deleted on ${invigil.datetime(x.purged_at)} (retention ${x.retention_days} days).`
      : x.delete_at ? `Clips and scores will be deleted on ${invigil.datetime(x.delete_at)} (retention ${x.retention_days} days).`
      : `Clips and scores are kept ${x.retention_days} days after the exam stops.`;
    const body = document.querySelector("#sessions tbody");
    body.textContent = "";
    for (const s of data.sessions) {
      const tr = invigil.el("tr", { class: "session", "data-session": s.session_id, tabindex: "0" },
        invigil.el("td", { text: s.priority.toFixed(0) }), invigil.el("td", { text: s.device_id }),
        invigil.el("td", { text: s.student_id }), invigil.el("td", { text: invigil.secs(s.under_s) }),
        invigil.el("td", { text: String(s.incidents.length) }), invigil.el("td", { text: `${s.reviewed}/${s.incidents.length}` }));
      tr.addEventListener("click", () => show(s.session_id));
      tr.addEventListener("keydown", (ev) => { if (ev.key === "Enter") show(s.session_id); });
      body.append(tr);
    }
    const m = /^#incident-(\d+)$/.exec(location.hash);
    const byHash = m && data.sessions.find((s) => s.incidents.some((i) => String(i.id) === m[1]));
    const pick = current || (byHash && byHash.session_id) || (data.sessions[0] && data.sessions[0].session_id);
    if (pick) await show(pick);
  }

  async function show(sid) {
    current = sid;
    const s = data.sessions.find((x) => x.session_id === sid);
    if (!s) return;
    for (const tr of document.querySelectorAll("#sessions tr.session")) tr.classList.toggle("chosen", tr.dataset.session === sid);
    document.getElementById("detail").hidden = false;
    document.getElementById("who").textContent = `${s.student_id} at ${s.device_id}`;
    document.getElementById("csv").href = `/api/sessions/${encodeURIComponent(sid)}/incidents.csv`;
    document.getElementById("print").href = `/console/sessions/${encodeURIComponent(sid)}/print`;
    const list = document.getElementById("incidents");
    list.textContent = "";
    for (const i of s.incidents) {
      const d = i.decision;
      const li = invigil.el("li", { id: `incident-${i.id}`, class: "incident", "data-id": String(i.id), "data-decision": d ? d.decision : "" },
        invigil.el("div", { class: "what", text: `${invigil.time(i.started)} · ${invigil.secs(i.duration_s)}${i.ended ? "" : " (open)"} · lowest score ${i.min_score} · ${i.reasons.join(", ") || "low score"}` }),
        invigil.el("div", { class: "decision", text: d ? `${d.decision} by ${d.by}, ${invigil.datetime(d.at)}${d.note ? ": " + d.note : ""}` : "not reviewed" }));
      const b = invigil.el("button", { type: "button", class: "play", text: i.clip ? "Play clip and decide" : "Decide (no clip)" });
      b.addEventListener("click", () => open(i));
      li.append(b);
      list.append(li);
    }
    await plot(sid);
  }

  async function plot(sid) {
    const p = await invigil.api("GET", `/api/sessions/${encodeURIComponent(sid)}/scores?buckets=800`);
    const el = document.getElementById("plot");
    el.textContent = "";
    const W = 800, H = 200, L = 30, B = 20;
    if (!p.points.length) { el.append(svg("text", { x: L, y: H / 2, class: "empty" }, "no scores (yet, or deleted by retention)")); return; }
    const t0 = p.points[0][0], t1 = Math.max(p.points[p.points.length - 1][0] + p.bucket_s * 1000, t0 + 1000);
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 5);
    const y = (v) => 5 + (1 - v / 100) * (H - B - 5);
    for (const i of p.incidents) {
      const a = x(new Date(i.started).getTime()), b = x(i.ended ? new Date(i.ended).getTime() : t1);
      el.append(svg("rect", { x: a, y: 5, width: Math.max(2, b - a), height: H - B - 5, class: "span" }));
    }
    el.append(svg("line", { x1: L, x2: W - 5, y1: y(p.threshold), y2: y(p.threshold), class: "threshold" }));
    const line = (k, cls) => svg("polyline", { class: cls, points: p.points.map((q) => `${x(q[0]).toFixed(1)},${y(q[k]).toFixed(1)}`).join(" ") });
    el.append(line(1, "min"), line(2, "mean"));
    for (const v of [0, 50, 100]) el.append(svg("text", { x: 2, y: y(v) + 4, class: "axis" }, String(v)));
    el.append(svg("text", { x: L, y: H - 4, class: "axis" }, invigil.time(new Date(t0).toISOString())));
    el.append(svg("text", { x: W - 90, y: H - 4, class: "axis" }, invigil.time(new Date(t1).toISOString())));
    el.dataset.points = String(p.points.length);
  }

  const dlg = document.getElementById("player");
  const video = document.getElementById("video");
  function open(i) {
    playing = i;
    document.getElementById("ptitle").textContent = `Incident ${i.id}: ${i.reasons.join(", ") || "low score"}, ${invigil.secs(i.duration_s)}, lowest score ${i.min_score}`;
    document.getElementById("dmsg").textContent = "";
    const form = document.getElementById("decide");
    form.reset();
    const parts = document.getElementById("parts");
    parts.textContent = "";
    const play = (n) => {
      video.src = n ? `${i.clip.url}?part=${n}` : i.clip.url;
      video.play().catch(() => { /* autoplay rules: the user presses play */ });
    };
    if (i.clip) {
      video.hidden = false;
      play(0);
      // A long incident is chained into several files.
      if (i.clip.parts > 1) {
        parts.append(invigil.el("span", { text: "Clip files: " }));
        for (let n = 0; n < i.clip.parts; n++) {
          const b = invigil.el("button", { type: "button", text: `part ${n + 1} of ${i.clip.parts}` });
          b.addEventListener("click", () => play(n));
          parts.append(b, " ");
        }
      }
    } else { video.hidden = true; video.removeAttribute("src"); }
    dlg.showModal();
  }
  function close() { video.pause(); video.removeAttribute("src"); video.load(); dlg.close(); }
  document.getElementById("close").addEventListener("click", close);
  document.getElementById("decide").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(ev.target);
    const out = document.getElementById("dmsg");
    if (!f.get("decision")) { out.textContent = "choose confirmed or dismissed"; return; }
    try {
      await invigil.api("POST", `/api/incidents/${playing.id}/review`, { decision: f.get("decision"), note: f.get("note") || null });
      close();
      await load();
    } catch (e) { out.textContent = e.message; }
  });
  load().catch((e) => { document.getElementById("examinfo").textContent = e.message; });
});
