// What the browser tests share: Debian's Chromium through playwright-core, and a TCP proxy to the
// edge that can fail the network under the browser.

import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";
import net from "node:net";

function chromiumPath() {
  if (process.env.CHROMIUM) return process.env.CHROMIUM;
  for (const name of ["chromium", "chromium-browser"]) {
    try {
      return execFileSync("which", [name]).toString().trim();
    } catch {}
  }
  throw new Error("no chromium on PATH: apt-get install chromium (scripts/install-browser.sh)");
}

/** Headless Chromium, offline apart from the pages the test opens. */
export function launch() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
}

/**
 * A TCP proxy to the edge for the page, so that the test can fail the network under the
 * browser: `cut(ms)` resets every open connection and refuses new ones for `ms`.
 */
export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const open = new Set();
  let refuseUntil = 0;
  const server = net.createServer((client) => {
    if (Date.now() < refuseUntil) return client.resetAndDestroy();
    const upstream = net.connect(Number(port), hostname);
    const pair = [client, upstream];
    open.add(pair);
    const end = () => {
      open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of pair) s.on("error", end).on("close", end);
    client.pipe(upstream).pipe(client);
  });
  await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cut(ms) {
      refuseUntil = Date.now() + ms;
      for (const [client, upstream] of open) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      open.clear();
    },
    close: () => server.close(),
  };
}
