// The room console in headless Chromium (Debian's, driven by playwright-core)
// against a real hub with real agents: tests/e2e/hub_console.rs starts them
// and runs this with one JSON argument:
//   {"hub","user","password","room","roster","empty_desk","desks":[…],
//    "agent_live":{"desk":"ws://127.0.0.1:P/live"},"shots":DIR|null,"limit_s":N}
// Each step is asserted; latencies are measured and printed, not asserted
// tightly (a loaded 2-core machine): the last stdout line is a JSON report
// that the Rust test checks further (the clip's duration against the stored MP4,
// the audit rows in PostgreSQL).
import { chromium } from "playwright-core";

const cfg = JSON.parse(process.argv[2]);
const limit = (cfg.limit_s || 60) * 1000;
const report = { steps: [] };
const step = (name, extra) => { report.steps.push(name); console.error(`console test: ${name}${extra ? " " + JSON.stringify(extra) : ""}`); };
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"],
});
let code = 0;
const errors = [];
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 820 } });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });

  // The empty desk's own /live, to know when its incident opens on the box:
  // opened from the agent's status page (same origin as its /live).
  const watch = await ctx.newPage();
  const boxLive = cfg.agent_live[cfg.empty_desk];
  await watch.goto(boxLive.replace(/^ws:/, "http:").replace(/\/live$/, "/"));
  await watch.evaluate((url) => {
    window.opened = null;
    window.watched = { messages: 0, state: "connecting" };
    const ws = new WebSocket(url);
    ws.onopen = () => { window.watched.state = "open"; };
    ws.onclose = (e) => { window.watched.state = `closed ${e.code}`; };
    ws.onmessage = (ev) => {
      window.watched.messages += 1;
      const m = JSON.parse(ev.data);
      // The first incident opened under the exam's session (one open
      // before the session is not the exam's).
      if (m.type === "incident" && !m.ended && m.session_id && !window.opened) window.opened = { id: m.id, at: Date.now() };
    };
  }, boxLive);
  await watch.waitForFunction(() => window.watched.state === "open", null, { timeout: limit });

  // 1. Login: the room page redirects to the login form, then back.
  const roomUrl = `${cfg.hub}/console/rooms/${encodeURIComponent(cfg.room)}`;
  await page.goto(roomUrl);
  if (!page.url().includes("/login?next=")) throw new Error(`not sent to the login: ${page.url()}`);
  await page.fill("input[name=user]", cfg.user);
  await page.fill("input[name=password]", cfg.password);
  await Promise.all([page.waitForURL(roomUrl, { timeout: limit }), page.click("button[type=submit]")]);
  step("logged in");

  // 2. The room: one tile per desk, no session yet.
  await page.waitForFunction((n) => document.querySelectorAll("#grid .tile").length === n, cfg.desks.length, { timeout: limit });
  await page.waitForFunction(() => [...document.querySelectorAll("#grid .tile")].every((t) => t.dataset.state !== "offline"), null, { timeout: limit });
  const before = await page.evaluate(() => [...document.querySelectorAll("#grid .tile")].map((t) => t.dataset.state));
  if (before.some((s) => s === "in_session" || s === "alert")) throw new Error(`a desk in session before the exam: ${before}`);
  step("desks connected, no session", before);

  // 3. Roster import (CSV with row,col).
  await page.setInputFiles("#roster", cfg.roster);
  await page.waitForFunction(() => document.getElementById("exam").dataset.state === "ready", null, { timeout: limit });
  // The tiles take the roster's students and places at the next tick.
  await page.waitForFunction(() => [...document.querySelectorAll("#grid .tile")].every((t) => t.querySelector(".student").textContent !== "—" && t.style.gridRow), null, { timeout: limit });
  const placed = await page.evaluate(() => [...document.querySelectorAll("#grid .tile")].map((t) => [t.dataset.desk, t.style.gridRow, t.style.gridColumn, t.querySelector(".student").textContent]));
  step("roster imported", placed);
  const examId = Number(await page.evaluate(() => document.getElementById("exam").dataset.exam));

  // 4. Start: every desk live (in session with a score).
  const t0 = Date.now();
  await page.click("#start");
  const live = {};
  const liveStates = ["in_session", "alert", "camera"];
  while (Object.keys(live).length < cfg.desks.length) {
    if (Date.now() - t0 > limit) throw new Error(`desks not live within ${limit} ms: ${JSON.stringify(live)}`);
    const now = await page.evaluate((ok) => [...document.querySelectorAll("#grid .tile")]
      .filter((t) => ok.includes(t.dataset.state) && t.dataset.score !== "").map((t) => t.dataset.desk), liveStates);
    for (const d of now) if (!(d in live)) live[d] = Date.now() - t0;
    await page.waitForTimeout(50);
  }
  report.live_ms = live;
  step("desks live", live);

  // 5. The empty desk's alert, against the moment its incident opened on the box.
  await watch.waitForFunction(() => !!window.opened, null, { timeout: limit })
    .catch(async () => { throw new Error(`the box's /live never said an incident opened in the session: ${JSON.stringify(await watch.evaluate(() => window.watched))}`); });
  const opened = await watch.evaluate(() => window.opened);
  await watch.close();
  await page.waitForFunction((key) => !!window.consoleStats.alertSeen[key], opened.id, { timeout: limit });
  const seen = await page.evaluate((key) => window.consoleStats.alertSeen[key], opened.id);
  if (seen.desk !== cfg.empty_desk) throw new Error(`the alert is on ${seen.desk}`);
  report.alert_ms = seen.at - opened.at;
  report.incident_key = opened.id;
  step("alert seen", { alert_ms: report.alert_ms, key: opened.id });
  if (cfg.shots) await page.screenshot({ path: `${cfg.shots}/console-room.png` });

  // 6. An incident of the empty desk in review, once its batch and clip reached
  // the hub (the first may close before its clip is written: any with a clip).
  let inc = null;
  const d2 = Date.now() + 2 * limit;
  while (!inc) {
    if (Date.now() > d2) throw new Error("no clip of the empty desk reached the hub");
    inc = await page.evaluate(async ([exam, desk]) => {
      const r = await (await fetch(`/api/exams/${exam}/review`)).json();
      for (const s of r.sessions) if (s.device_id === desk) for (const i of s.incidents) if (i.clip) return i;
      return null;
    }, [examId, cfg.empty_desk]);
    if (!inc) await page.waitForTimeout(500);
  }
  report.review_key = inc.key;
  report.incident_id = inc.id;
  await page.waitForSelector(`.alert-item[data-key="${inc.key}"] a`, { timeout: limit });
  await Promise.all([page.waitForURL(/\/console\/exams\/\d+/, { timeout: limit }), page.click(`.alert-item[data-key="${inc.key}"] a`)]);
  await page.waitForSelector(`#incident-${inc.id} button.play`, { timeout: limit });
  await page.waitForFunction(() => Number(document.getElementById("plot").dataset.points || 0) > 0, null, { timeout: limit });
  step("review page", { incident: inc.id });

  // 7. The clip plays in the page.
  await page.click(`#incident-${inc.id} button.play`);
  await page.waitForFunction(() => document.getElementById("video").readyState >= 3, null, { timeout: limit });
  const v = await page.evaluate(() => { const v = document.getElementById("video"); return { readyState: v.readyState, duration: v.duration, src: v.currentSrc }; });
  report.video = v;
  step("clip playing", v);

  // 8. Dismissed, with a note.
  await page.check("#decide input[value=dismissed]");
  await page.fill("#decide textarea[name=note]", cfg.note);
  await page.click("#decide button[type=submit]");
  await page.waitForSelector(`#incident-${inc.id}[data-decision="dismissed"]`, { timeout: limit });
  step("dismissed");
  if (cfg.shots) await page.screenshot({ path: `${cfg.shots}/console-review.png` });

  // 9. The audit log lists the view and the decision.
  await page.goto(`${cfg.hub}/console/audit?room=${encodeURIComponent(cfg.room)}`);
  await page.waitForSelector("tr.audit-row", { timeout: limit });
  const rows = await page.evaluate(() => [...document.querySelectorAll("tr.audit-row")].map((r) => [...r.cells].map((c) => c.textContent)));
  const has = (action) => rows.some((r) => r[1] === cfg.user && r[2] === action && r[4].includes(`incident: ${report.incident_id}`));
  if (!has("clip.view")) throw new Error(`no clip.view in the audit page: ${JSON.stringify(rows.slice(0, 5))}`);
  if (!has("incident.review") || !rows.some((r) => r[4].includes(cfg.note))) throw new Error(`no decision in the audit page: ${JSON.stringify(rows.slice(0, 5))}`);
  step("audit log lists the view and the decision");
  if (errors.length) throw new Error(`page errors: ${errors.join(" | ")}`);
  report.exam_id = examId;
} catch (e) {
  console.error(`console test failed: ${e && e.stack || e}${errors.length ? "\npage errors: " + errors.join(" | ") : ""}`);
  code = 1;
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
process.exit(code);
