// A browser's own EventSource on /sse/vip (through a TCP proxy the test can cut), in headless
// Chromium: it reads prices, the network is cut twice (every connection reset, new ones refused
// for 1.5 s), and the browser reconnects by itself, sending Last-Event-ID. Talks to the Rust test
// (tests/edge_sse.rs) on stdin/stdout: it prints "stop-feed" and reads back the last seqNo of each
// partition, reads until it has them, and prints "RESULT <json>" with every frame it received and
// how many times the stream opened. The Rust test checks the frames against Kafka.

import readline from "node:readline";
import { launch, startProxy } from "./harness.mjs";

const base = process.env.PRICEFEED_URL;
const token = process.env.PRICEFEED_TOKEN;
if (!base || !token) throw new Error("set PRICEFEED_URL and PRICEFEED_TOKEN");
const input = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();

const browser = await launch();
const proxy = await startProxy(base);
try {
  const page = await browser.newPage();
  await page.goto(`${proxy.url}/healthz`);
  await page.evaluate((token) => {
    window.got = [];
    window.opens = 0;
    window.last = {};
    const es = new EventSource(`/sse/vip?token=${encodeURIComponent(token)}`);
    es.onopen = () => window.opens++;
    es.onmessage = (e) => {
      const frame = JSON.parse(e.data);
      window.got.push({ id: e.lastEventId, frame });
      if (frame.type === "message") window.last[frame.partition] = frame.seqNo;
    };
  }, token);
  const state = () =>
    page.evaluate(() => ({
      opens: window.opens,
      prices: window.got.filter((g) => g.frame.type === "message").length,
      last: window.last,
    }));
  async function until(ok, what) {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const s = await state();
      if (ok(s)) return s;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  await until((s) => s.opens === 1 && s.prices >= 150, "the first prices");
  proxy.cut(1500);
  await until((s) => s.opens === 2 && s.prices >= 300, "prices after the first cut");
  proxy.cut(1500);
  await until((s) => s.opens === 3 && s.prices >= 450, "prices after the second cut");
  console.log("stop-feed");
  const end = JSON.parse((await input.next()).value);
  await until((s) => Object.entries(end).every(([p, seq]) => s.last[p] === seq), `the end ${JSON.stringify(end)}`);
  const got = await page.evaluate(() => window.got);
  const { opens } = await state();
  console.log(`RESULT ${JSON.stringify({ opens, got })}`);
} finally {
  proxy.close();
  await browser.close();
}
process.exit(0);
