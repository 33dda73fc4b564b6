// N WebSocket clients, each sending 640x480 JPEG data URLs to /analyze and
// waiting for the reply before the next (one frame in flight per client),
// for SECONDS. Prints frames served per second and reply latency p50/p99.
//   node --experimental-websocket scripts/bench-analyze.mjs WS_URL JPEG_DIR CLIENTS SECONDS
import { readdirSync, readFileSync } from "node:fs";

const [url, dir, clientsArg, secondsArg] = process.argv.slice(2);
const clients = Number(clientsArg), seconds = Number(secondsArg);
const frames = readdirSync(dir).filter((f) => f.endsWith(".jpg")).sort()
  .map((f) => "data:image/jpeg;base64," + readFileSync(`${dir}/${f}`).toString("base64"));
const lat = [];
let served = 0, errors = 0, dropped = 0;
const end = Date.now() + seconds * 1000;
await Promise.all(Array.from({ length: clients }, (_, c) => new Promise((done) => {
  const ws = new WebSocket(url);
  let i = c * 7, t0 = 0;
  const next = () => {
    if (Date.now() >= end) { ws.close(); return done(); }
    t0 = performance.now();
    ws.send(frames[i++ % frames.length]);
  };
  ws.onopen = next;
  ws.onmessage = (m) => {
    const r = JSON.parse(m.data);
    if (r.type === "analysis") { served++; lat.push(performance.now() - t0); }
    else if (r.type === "dropped") { dropped++; return; }
    else errors++;
    next();
  };
  ws.onerror = () => { errors++; done(); };
})));
lat.sort((a, b) => a - b);
const p = (q) => lat.length ? lat[Math.min(lat.length - 1, Math.floor(q * lat.length))].toFixed(1) : "-";
console.log(`${clients} client(s): ${(served / seconds).toFixed(1)} frames/s served, latency p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, ${errors} errors, ${dropped} dropped`);
