// The room view under load (scripts/bench-console): logs in, opens the room,
// waits for every tile to be in session, then over MEASURE_S seconds counts
// each tile's updates (the page's own window.consoleStats: the largest gap
// between two updates of a tile) and the page's CPU cost from Chromium's
// Performance.getMetrics (TaskDuration, ScriptDuration, LayoutDuration,
// RecalcStyleDuration: seconds of main-thread work per second). One JSON
// line on stdout; exit 1 if a tile went more than a second without an update.
//   node console-bench.mjs '{"hub","user","password","room","desks":N,"measure_s":S,"shot":PATH|null}'
import { chromium } from "playwright-core";

const cfg = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run"],
});
let code = 0;
try {
  const ctx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const page = await ctx.newPage();
  await page.goto(`${cfg.hub}/login`);
  await page.fill("input[name=user]", cfg.user);
  await page.fill("input[name=password]", cfg.password);
  await Promise.all([page.waitForURL(/\/console$/), page.click("button[type=submit]")]);
  await page.goto(`${cfg.hub}/console/rooms/${encodeURIComponent(cfg.room)}`);
  await page.waitForFunction((n) => document.querySelectorAll("#grid .tile").length === n, cfg.desks, { timeout: 60000 });
  await page.waitForFunction(() => [...document.querySelectorAll("#grid .tile")].every((t) => t.dataset.state === "in_session" || t.dataset.state === "alert"), null, { timeout: 60000 });
  await page.waitForTimeout(3000);
  const cdp = await ctx.newCDPSession(page);
  await cdp.send("Performance.enable");
  const metrics = async () => Object.fromEntries((await cdp.send("Performance.getMetrics")).metrics.map((m) => [m.name, m.value]));
  await page.evaluate(() => { for (const s of Object.values(window.consoleStats.updates)) { s.n = 0; s.last = null; s.maxGap = 0; } window.consoleStats.messages = 0; });
  const m0 = await metrics();
  const t0 = Date.now();
  await page.waitForTimeout(cfg.measure_s * 1000);
  const m1 = await metrics();
  const wall = (Date.now() - t0) / 1000;
  const st = await page.evaluate(() => ({ updates: window.consoleStats.updates, messages: window.consoleStats.messages }));
  const tiles = Object.values(st.updates);
  const gaps = tiles.map((s) => s.maxGap).sort((a, b) => a - b);
  const counts = tiles.map((s) => s.n).sort((a, b) => a - b);
  const per = (k) => +((m1[k] - m0[k]) / wall).toFixed(4);
  const out = {
    desks: tiles.length, measure_s: +wall.toFixed(1), ws_messages: st.messages,
    updates_per_tile_per_s: { min: +(counts[0] / wall).toFixed(2), median: +(counts[Math.floor(counts.length / 2)] / wall).toFixed(2) },
    max_gap_ms: { median: Math.round(gaps[Math.floor(gaps.length / 2)]), p99: Math.round(gaps[Math.floor(gaps.length * 0.99)]), max: Math.round(gaps[gaps.length - 1]) },
    cpu_s_per_s: { task: per("TaskDuration"), script: per("ScriptDuration"), layout: per("LayoutDuration"), style: per("RecalcStyleDuration") },
    js_heap_mb: +(m1.JSHeapUsedSize / 1e6).toFixed(1), nodes: m1.Nodes,
  };
  if (cfg.shot) await page.screenshot({ path: cfg.shot });
  console.log(JSON.stringify(out));
  if (tiles.length !== cfg.desks || gaps[gaps.length - 1] > 1000 || counts[0] === 0) {
    console.error(`bench-console: a tile went more than 1 s without an update (max gap ${out.max_gap_ms.max} ms) or never updated`);
    code = 1;
  }
} catch (e) {
  console.error(`bench-console: ${e && e.stack || e}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
