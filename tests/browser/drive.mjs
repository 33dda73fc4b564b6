// Drives Debian's Chromium (fake camera fed from a Y4M file) through
// page.html and checks the agent's replies. Usage:
//   node drive.mjs PAGE_URL WS_URL Y4M FRAMES
import { chromium } from "playwright-core";

const [pageUrl, wsUrl, y4m, frames, statusUrl] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    `--use-file-for-fake-video-capture=${y4m}`,
  ],
});
let code = 0;
try {
  const page = await browser.newPage();
  await page.goto(`${pageUrl}?ws=${encodeURIComponent(wsUrl)}&frames=${frames}`);
  await page.waitForFunction((n) => window.failure || window.results.length >= n, Number(frames), { timeout: 60000 });
  const { results, failure, sent } = await page.evaluate(() => ({ results: window.results, failure: window.failure, sent: window.sent }));
  if (failure) throw new Error(failure);
  const analyses = results.filter((r) => r.type === "analysis");
  const dropped = results.filter((r) => r.type === "dropped").length;
  const errors = results.filter((r) => r.type === "error");
  const order = analyses.every((r, i) => i === 0 || r.frame > analyses[i - 1].frame);
  const high = analyses.filter((r) => r.focus_score >= 50).length / Math.max(1, analyses.length);
  const lat = analyses.map((r) => r.latency_ms).sort((a, b) => a - b);
  console.log(`sent ${sent}, replies ${results.length}: ${analyses.length} analyses, ${dropped} dropped, ${errors.length} errors; ` +
    `in order: ${order}; ${(100 * high).toFixed(0)}% scored 50 or more; scoring p50 ${lat[Math.floor(lat.length / 2)]} ms`);
  if (!order) { console.error("replies out of order"); code = 1; }
  if (errors.length) { console.error("error replies:", JSON.stringify(errors.slice(0, 3))); code = 1; }
  if (high < 0.5) { console.error("most frames should score 50 or more"); code = 1; }
  if (analyses.length + dropped !== Number(frames)) { console.error("one reply per frame expected"); code = 1; }

  // The installer's status page: the score and frame number update from /live.
  if (statusUrl) {
    const status = await browser.newPage();
    await status.goto(statusUrl);
    await status.waitForFunction(() => /^\d+$/.test(document.getElementById("s").textContent), null, { timeout: 20000 });
    const first = await status.textContent("#info");
    await status.waitForFunction((f) => document.getElementById("info").textContent !== f, first, { timeout: 20000 });
    const later = await status.textContent("#info");
    console.log(`status page: score ${await status.textContent("#s")}; "${first}" then "${later}"`);
  }
} catch (e) {
  console.error(String(e));
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
