// Drives the trading UI at PRICEFEED_URL in headless Chromium (Debian's, through playwright-core)
// and checks what a user would: both channels show live prices that update; retail quotes wider
// than vip for the same source price on every symbol both carry; after the connection is cut the
// panels resume with no seqNo gap (by the client library's own gap detection) and the missed
// prices replayed, both when the panel's "drop" button cuts the connection and when the network
// does (a TCP proxy between the browser and the edge resets every connection and refuses new
// ones for 2 s); the rendered spread is the quoted one in pips; no request leaves the page's
// origin (it works offline); and the /docs playground's setup/subscribe flow logs ready,
// subscribed and prices; a panel switched to Server-Sent Events streams and resumes, and with a
// throttle of 1/s shows no symbol more often; a size-tiered channel shows each symbol's ladder,
// as the prices carry it, updating live. Saves screenshots. Exits non-zero with the reason on any failure.
//
// Run through `cargo test --test browser_ui` (it starts the broker, pricefeed and the feed).

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { launch, startProxy } from "./harness.mjs";

const base = process.env.PRICEFEED_URL;
const shot = process.env.PRICEFEED_SCREENSHOT || "target/browser/ui.png";
if (!base) throw new Error("set PRICEFEED_URL");

/** Fails on any request (WebSockets included) that leaves `origin`: the pages work offline. */
function sameOriginOnly(page, origin, failures) {
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.protocol !== "data:" && url.origin !== origin) failures.push(`request off origin: ${r.url()}`);
  });
  page.on("websocket", (ws) => {
    if (new URL(ws.url()).host !== new URL(origin).host) failures.push(`WebSocket off origin: ${ws.url()}`);
  });
}

/** "1.08412" at scale 6 → 1084120n (prices are positive). */
function scaledUnits(s, scale) {
  const [i, f = ""] = s.split(".");
  return BigInt(i) * 10n ** BigInt(scale) + BigInt((f + "0".repeat(scale)).slice(0, scale) || "0");
}

function check(ok, what) {
  if (!ok) throw new Error(what);
  console.log(`ok: ${what}`);
}

const browser = await launch();
const failures = [];
const proxy = await startProxy(base);
// While the test fails the network, the browser's own connection errors are expected.
let networkDown = false;
const networkError = /WebSocket connection to|Failed to load resource|net::ERR_|Failed to fetch/;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && !(networkDown && networkError.test(m.text()))) failures.push(`console error: ${m.text()}`);
  });
  sameOriginOnly(page, proxy.url, failures);
  await page.goto(proxy.url + "/");
  await page.waitForFunction(() => window.pricefeedUi?.panels.length === 2, null, { timeout: 20_000 });

  // Record every price each panel's socket delivers, to compare the same source price.
  await page.evaluate(() => {
    window.seen = { vip: [], retail: [] };
    for (const p of window.pricefeedUi.panels) {
      p.socket.on("price", (m) => window.seen[p.channel]?.push({ s: m.data.symbol, id: m.data.id ?? m.data.ts, bid: m.data.bid, ask: m.data.ask }));
    }
  });
  const channels = await page.evaluate(() => window.pricefeedUi.panels.map((p) => p.channel));
  check(channels.join(",") === "vip,retail", `the panels show vip and retail (${channels})`);

  // 1. Both channels show prices, and they update.
  const rowsWithPrices = (channel) =>
    page.$$eval(`section[data-channel="${channel}"] tbody tr[data-seq]`, (trs) =>
      trs.map((tr) => [tr.dataset.symbol, Number(tr.dataset.seq)]),
    );
  await page.waitForFunction(
    () => ["vip", "retail"].every((c) => document.querySelectorAll(`section[data-channel="${c}"] tr[data-seq]`).length >= 3),
    null,
    { timeout: 30_000 },
  );
  const before = { vip: await rowsWithPrices("vip"), retail: await rowsWithPrices("retail") };
  for (const c of ["vip", "retail"]) {
    // Right after start-up the transform may still be working through the feed's backlog:
    // give the rows up to 20 s to move.
    let moved = 0;
    for (let waited = 0; moved === 0 && waited < 20_000; waited += 500) {
      await page.waitForTimeout(500);
      const after = new Map(await rowsWithPrices(c));
      moved = before[c].filter(([s, seq]) => after.get(s) > seq).length;
    }
    check(moved > 0, `${c}: prices update (${moved} of ${before[c].length} rows moved on)`);
    const state = await page.$eval(`section[data-channel="${c}"] .state`, (e) => e.textContent);
    check(state === "open", `${c}: connection state shown as open`);
  }

  // What the table shows: each row's spread is its ask − bid in pips (to a tenth, half up), from the
  // instrument's pip; rows flash up or down as prices move.
  const instruments = await page.evaluate(async () => (await (await fetch("/demo/session")).json()).instruments);
  for (const c of ["vip", "retail"]) {
    const rows = await page.$$eval(`section[data-channel="${c}"] tbody tr[data-seq]`, (trs) =>
      trs.map((tr) => ({
        symbol: tr.dataset.symbol,
        bid: tr.querySelector(".bid").textContent,
        ask: tr.querySelector(".ask").textContent,
        spread: tr.querySelector(".spread").textContent,
      })),
    );
    for (const r of rows) {
      const pip = instruments[r.symbol].pip;
      const scale = Math.max(...[r.bid, r.ask, pip].map((x) => (x.split(".")[1] ?? "").length));
      const [b, a, p] = [r.bid, r.ask, pip].map((x) => scaledUnits(x, scale));
      const tenths = ((a - b) * 20n + p) / (2n * p);
      const want = `${tenths / 10n}.${tenths % 10n}`;
      if (r.spread !== want) throw new Error(`${c} ${r.symbol}: shows spread ${r.spread} for ${r.bid}/${r.ask} (pip ${pip}), want ${want}`);
    }
    check(rows.length >= 3, `${c}: the spread shown is ask − bid in pips on all ${rows.length} rows`);
  }
  await page.waitForFunction(() => document.querySelectorAll("tr.up, tr.down").length > 0, null, { timeout: 10_000 });
  check(true, "rows flash up/down as prices move");

  // 2. Retail is wider than vip on every symbol both carry, for the same source price. The two
  // panels stream independently: collect until every shared symbol has a price seen on both.
  const retailSymbols = await page.$$eval(`section[data-channel="retail"] tbody tr`, (trs) => trs.map((t) => t.dataset.symbol));
  // The raw record's id (the simulator sets one) names the source price; kept only when it
  // occurs once per channel.
  const once = (list) => {
    const n = new Map();
    for (const r of list) n.set(`${r.s}@${r.id}`, (n.get(`${r.s}@${r.id}`) ?? []).concat([r]));
    return new Map([...n].filter(([, v]) => v.length === 1).map(([k, v]) => [k, v[0]]));
  };
  let compared = new Map();
  for (let waited = 0; waited < 30_000; waited += 500) {
    const seen = await page.evaluate(() => window.seen);
    const vip = once(seen.vip);
    compared = new Map();
    for (const [key, r] of once(seen.retail)) {
      const v = vip.get(key);
      if (!v) continue;
      const scale = Math.max(...[v.bid, v.ask, r.bid, r.ask].map((x) => (x.split(".")[1] ?? "").length));
      const vs = scaledUnits(v.ask, scale) - scaledUnits(v.bid, scale);
      const rs = scaledUnits(r.ask, scale) - scaledUnits(r.bid, scale);
      if (rs <= vs) throw new Error(`retail not wider than vip for ${key}: retail ${r.bid}/${r.ask}, vip ${v.bid}/${v.ask}`);
      compared.set(r.s, (compared.get(r.s) ?? 0) + 1);
    }
    if (retailSymbols.every((s) => compared.has(s))) break;
    await page.waitForTimeout(500);
  }
  const missing = retailSymbols.filter((s) => !compared.has(s));
  check(missing.length === 0, `retail is wider than vip on every shared symbol (${[...compared].map(([s, n]) => `${s}×${n}`).join(", ")}; missing: ${missing})`);

  // 3. Cut both connections for 2 s while the feed runs, first with the panels' "drop" buttons
  // (the library's interrupt()), then by failing the network under the browser (the proxy resets
  // the sockets and refuses connections: the library sees the close, backs off and reconnects).
  // Each panel resumes with no gap, no duplicate and no snapshot in place of a replay, every
  // time. The feed must have moved on while they were away for the resume to replay anything;
  // right after start-up the pipeline works in bursts (a busy machine can stall for a moment at
  // times), so a cut during which nothing was published is repeated, up to 4 cuts in all.
  const hubEnd = async (c) =>
    page.evaluate(async (c) => {
      const t = (await (await fetch("/stats")).json()).topics.find((x) => x.topic === c);
      return Object.values(t.lastSeqNo).reduce((a, b) => a + b, 0);
    }, c);
  await page.evaluate(() => {
    window.closes = [];
    for (const p of window.pricefeedUi.panels) p.socket.on("close", (e) => window.closes.push({ channel: p.channel, ...e }));
  });
  const cutAndResume = async (how, cut) => {
    const replayedBy = { vip: 0, retail: 0 };
    for (let attempt = 1; attempt <= 4 && (replayedBy.vip === 0 || replayedBy.retail === 0); attempt++) {
      const statsBefore = await page.evaluate(() => window.pricefeedUi.panels.map((p) => ({ ...p.socket.stats })));
      const endBefore = { vip: await hubEnd("vip"), retail: await hubEnd("retail") };
      await cut();
      await page.waitForFunction(
        (prev) => window.pricefeedUi.panels.every((p, i) => p.socket.stats.resumed > prev[i].resumed && p.socket.state === "open"),
        statsBefore,
        { timeout: 30_000 },
      );
      networkDown = false;
      // Live again: prices arrive after the resume (a busy machine may pause).
      await page.waitForFunction(
        (prev) => window.pricefeedUi.panels.every((p, i) => p.socket.stats.messages > prev[i].messages),
        statsBefore,
        { timeout: 30_000 },
      );
      const statsAfter = await page.evaluate(() => window.pricefeedUi.panels.map((p) => ({ channel: p.channel, ...p.socket.stats })));
      for (const [i, s] of statsAfter.entries()) {
        const was = statsBefore[i];
        check(s.reconnects > was.reconnects, `${s.channel}: reconnected (${how} ${attempt})`);
        check(s.gaps === 0, `${s.channel}: no seqNo gap (the client library counted ${s.gaps})`);
        check(s.duplicates === 0, `${s.channel}: no duplicate (${s.duplicates})`);
        check(s.snapshots === was.snapshots, `${s.channel}: resumed, not restarted from a snapshot`);
        check(s.messages > was.messages, `${s.channel}: live again (${s.messages} prices)`);
        replayedBy[s.channel] += s.replayed - was.replayed;
      }
      console.log(`${how} ${attempt}: replayed ${JSON.stringify(replayedBy)}; the feed moved on by vip ${(await hubEnd("vip")) - endBefore.vip}, retail ${(await hubEnd("retail")) - endBefore.retail} meanwhile`);
    }
    for (const c of ["vip", "retail"]) {
      check(replayedBy[c] > 0, `${c}: the prices missed during the ${how} were replayed (${replayedBy[c]})`);
    }
  };
  await cutAndResume("drop", async () => {
    for (const c of ["vip", "retail"]) await page.click(`section[data-channel="${c}"] button.drop`);
  });
  await cutAndResume("network failure", async () => {
    networkDown = true;
    proxy.cut(2000);
  });
  const closes = await page.evaluate(() => window.closes);
  for (const c of ["vip", "retail"]) {
    const lost = closes.filter((e) => e.channel === c && e.code === 1006 && e.willReconnect);
    check(lost.length > 0, `${c}: the library saw the connection fail (close 1006) and reconnected on its own`);
  }

  // 3b. The vip panel on Server-Sent Events: it says so, streams, and after a drop resumes with
  // no gap, no duplicate and no snapshot; then throttled to 1 update per second per symbol: it
  // says so and never shows a symbol more often than that.
  const vipPanel = `section[data-channel="vip"]`;
  await page.selectOption(`${vipPanel} select[aria-label=transport]`, "sse");
  await page.waitForFunction(
    () => {
      const p = window.pricefeedUi.panels.find((x) => x.channel === "vip");
      return p.socket.transport === "sse" && p.socket.state === "open" && p.socket.stats.messages >= 20;
    },
    null,
    { timeout: 30_000 },
  );
  check((await page.textContent(`${vipPanel} .transport`)) === "SSE", "vip: the panel shows it streams over SSE");
  const sseBefore = await page.evaluate(() => ({ ...window.pricefeedUi.panels.find((x) => x.channel === "vip").socket.stats }));
  await page.click(`${vipPanel} button.drop`);
  await page.waitForFunction(
    (prev) => {
      const s = window.pricefeedUi.panels.find((x) => x.channel === "vip").socket;
      return s.stats.resumed > prev.resumed && s.stats.messages > prev.messages + 10;
    },
    sseBefore,
    { timeout: 30_000 },
  );
  const sseAfter = await page.evaluate(() => ({ ...window.pricefeedUi.panels.find((x) => x.channel === "vip").socket.stats }));
  check(
    sseAfter.gaps === 0 && sseAfter.duplicates === 0 && sseAfter.snapshots === sseBefore.snapshots,
    `vip over SSE: dropped and resumed from its last seqNo (${JSON.stringify(sseAfter)})`,
  );
  await page.selectOption(`${vipPanel} select[aria-label=throttle]`, "1");
  await page.waitForFunction(
    () => document.querySelector('section[data-channel="vip"] .transport').textContent.includes("1/s"),
    null,
    { timeout: 15_000 },
  );
  await page.evaluate(() => {
    window.throttled = [];
    const p = window.pricefeedUi.panels.find((x) => x.channel === "vip");
    p.socket.on("price", (m) => window.throttled.push([m.data.symbol, performance.now()]));
  });
  await page.waitForTimeout(5_000);
  const arrivals = await page.evaluate(() => window.throttled);
  const bySymbol = new Map();
  for (const [sym, t] of arrivals) bySymbol.set(sym, (bySymbol.get(sym) ?? []).concat([t]));
  for (const [sym, ts] of bySymbol) {
    // Arrival times jitter with the browser's event loop: 300 ms of slack, still under one interval.
    const allowed = Math.floor((ts.at(-1) - ts[0] + 300) / 1000) + 1;
    check(ts.length <= allowed, `vip at 1/s: ${sym} updated ${ts.length} times in ${Math.round(ts.at(-1) - ts[0])} ms`);
  }
  check(bySymbol.size >= 3, `vip at 1/s: ${bySymbol.size} symbols still update`);
  check((await page.textContent(`${vipPanel} .transport`)) === "SSE · ≤ 1/s per symbol", "vip: the panel shows the throttle");

  // A size-tiered channel: the retail panel switched to pro (VWAP bands over the simulator's depth)
  // shows a ladder under each symbol, one bid and ask per band exactly as the price carried them,
  // bids falling and asks rising with size, a side the book cannot fill as "—"; and it updates.
  await page.selectOption(`section[data-channel="retail"] select[aria-label=channel]`, "pro");
  const proPanel = `section[data-channel="pro"]`;
  await page.waitForSelector(`${proPanel} tr.ladder`, { timeout: 20_000 });
  await page.evaluate(() => {
    window.proPrices = {};
    const p = window.pricefeedUi.panels.find((x) => x.channel === "pro");
    p.socket.on("price", (m) => (window.proPrices[`${m.data.symbol}@${m.seqNo}`] = m.data));
  });
  const ladderRows = () =>
    page.$$eval(`${proPanel} tr.ladder`, (trs) =>
      trs.map((tr) => {
        const cells = (cls) => [...tr.querySelectorAll(`.${cls}`)].map((c) => [c.textContent, c.classList.contains("thin"), c.dataset.upTo]);
        const row = tr.previousElementSibling;
        return {
          symbol: tr.dataset.ladder,
          seq: tr.dataset.ladderSeq,
          top: [row.querySelector(".bid").textContent, row.querySelector(".ask").textContent],
          method: tr.querySelector(".method").textContent,
          bids: cells("band-bid"),
          asks: cells("band-ask"),
        };
      }),
    );
  let matched = [];
  for (let waited = 0; matched.length < 3 && waited < 20_000; waited += 500) {
    await page.waitForTimeout(500);
    const prices = await page.evaluate(() => window.proPrices);
    matched = (await ladderRows()).filter((r) => prices[`${r.symbol}@${r.seq}`]).map((r) => [r, prices[`${r.symbol}@${r.seq}`]]);
  }
  check(matched.length >= 3, `pro: ${matched.length} symbols show a ladder drawn from a live price`);
  let thinSides = 0;
  for (const [row, data] of matched) {
    const bands = data.ladder.bands;
    const shown = (side) => row[side].map(([text]) => text);
    const want = (side) => bands.map((b) => b[side === "bids" ? "bid" : "ask"] ?? "—");
    if (JSON.stringify(shown("bids")) !== JSON.stringify(want("bids")) || JSON.stringify(shown("asks")) !== JSON.stringify(want("asks")))
      throw new Error(`pro ${row.symbol}: shows ${JSON.stringify(row)} for ${JSON.stringify(bands)}`);
    if (row.bids.some(([text, thin, upTo], i) => thin !== (text === "—") || upTo !== bands[i].up_to))
      throw new Error(`pro ${row.symbol}: thin marks or sizes wrong: ${JSON.stringify(row.bids)}`);
    thinSides += bands.filter((b) => b.bid === null).length + bands.filter((b) => b.ask === null).length;
    // Bids fall and asks rise with size, from the top-of-book quote on, and no band is crossed.
    const scale = Math.max(...[...row.top, ...shown("bids"), ...shown("asks")].filter((x) => x !== "—").map((x) => (x.split(".")[1] ?? "").length));
    const num = (x) => (x === "—" ? null : scaledUnits(x, scale));
    let [lastBid, lastAsk] = row.top.map(num);
    bands.forEach((_, i) => {
      const [b, a] = [num(shown("bids")[i]), num(shown("asks")[i])];
      if (b !== null && (lastBid === null || b > lastBid)) throw new Error(`pro ${row.symbol}: bid of band ${i} above a smaller band's`);
      if (a !== null && (lastAsk === null || a < lastAsk)) throw new Error(`pro ${row.symbol}: ask of band ${i} below a smaller band's`);
      if (b !== null && a !== null && b >= a) throw new Error(`pro ${row.symbol}: band ${i} crossed`);
      [lastBid, lastAsk] = [b, a];
    });
    check(row.method === "VWAP", `pro ${row.symbol}: ${bands.length} VWAP bands shown as quoted, monotonic by size`);
  }
  console.log(`pro: ${thinSides} band sides too thin to quote among the ladders shown`);
  const seqOf = async (symbol) => page.$eval(`${proPanel} tr.ladder[data-ladder="${symbol}"]`, (tr) => Number(tr.dataset.ladderSeq));
  const firstSymbol = matched[0][0].symbol;
  const seqBefore = await seqOf(firstSymbol);
  await page.waitForFunction(
    ([sel, seq]) => Number(document.querySelector(sel).dataset.ladderSeq) > seq,
    [`${proPanel} tr.ladder[data-ladder="${firstSymbol}"]`, seqBefore],
    { timeout: 20_000 },
  );
  check(true, `pro ${firstSymbol}: the ladder updates live (seqNo ${seqBefore} → ${await seqOf(firstSymbol)})`);

  mkdirSync(dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);

  // 4. The playground: a demo token, /ws, setup, subscribe: the log shows ready, subscribed and
  // prices; the HTTP API reference is rendered from /openapi.json.
  const docs = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  docs.on("pageerror", (e) => failures.push(`docs page error: ${e.message}`));
  sameOriginOnly(docs, new URL(base).origin, failures);
  await docs.goto(base + "/docs");
  await docs.waitForFunction(() => document.querySelectorAll("#demo-token option").length > 1, null, { timeout: 10_000 });
  await docs.selectOption("#demo-token", { label: "demo token for vip" });
  await docs.selectOption("#endpoint", "/ws");
  await docs.click("#connect");
  await docs.waitForSelector("#conn-state.open", { timeout: 10_000 });
  await docs.click('form[data-type="setup"] button');
  await docs.waitForSelector('#log li[data-dir="in"][data-type="ready"]', { timeout: 10_000 });
  await docs.fill('form[data-type="subscribe"] input[name="topic"]', "vip");
  await docs.click('form[data-type="subscribe"] button');
  // Read the sent frames now: the log keeps the newest 500 entries, and prices soon fill it.
  const sent = await docs.$$eval('#log li[data-dir="out"]', (lis) => lis.map((l) => l.dataset.type));
  for (const type of ["subscribed", "snapshot", "message"]) {
    await docs.waitForSelector(`#log li[data-dir="in"][data-type="${type}"]`, { timeout: 15_000 });
  }
  check(sent.includes("setup") && sent.includes("subscribe"), `playground: sent ${sent.join(", ")}; received ready, subscribed, snapshot, message`);
  await docs.click('form[data-type="raw"] button'); // empty text: the edge answers bad_request
  await docs.waitForSelector('#log li[data-dir="in"][data-type="error"]', { timeout: 10_000 });
  // Every other form: each frame it sends gets its answer, logged after a mark (the log numbers
  // its lines; it keeps the newest 500).
  const mark = () => docs.evaluate(() => Number(document.querySelector("#log li").dataset.n));
  const answered = (type, since, text = "") =>
    docs.waitForFunction(
      ([type, since, text]) =>
        [...document.querySelectorAll("#log li")].some(
          (li) => Number(li.dataset.n) > since && li.dataset.dir === "in" && li.dataset.type === type && li.textContent.includes(text),
        ),
      [type, since, text],
      { timeout: 15_000 },
    );
  for (const [form, answer, text] of [
    ["ping", "pong", ""],
    ["unsubscribe", "unsubscribed", '"topic":"vip"'],
    ["publish", "error", '"code":"forbidden"'], // demo tokens do not publish
  ]) {
    const since = await mark();
    await docs.click(`form[data-type="${form}"] button`);
    await answered(answer, since, text);
    check(true, `playground: ${form} → ${answer} ${text}`);
  }
  // /ws/sub/{topic}: the path names the topic; setup subscribes it; resume replays from a seqNo.
  await docs.click("#disconnect");
  await docs.waitForSelector("#conn-state.closed", { timeout: 10_000 });
  await docs.selectOption("#endpoint", "/ws/sub/");
  await docs.fill("#path-topic", "retail");
  await docs.selectOption("#demo-token", { label: "demo token for retail" });
  let since = await mark();
  await docs.click("#connect");
  await docs.waitForSelector("#conn-state.open", { timeout: 10_000 });
  await docs.click('form[data-type="setup"] button');
  for (const type of ["ready", "snapshot", "message"]) await answered(type, since, type === "ready" ? "" : '"topic":"retail"');
  const lastPrice = await docs.$eval('#log li[data-dir="in"][data-type="message"] code', (c) => JSON.parse(c.textContent));
  since = await mark();
  await docs.fill('form[data-type="resume"] input[name="topic"]', "retail");
  await docs.fill('form[data-type="resume"] input[name="from"]', JSON.stringify({ [lastPrice.partition]: lastPrice.seqNo - 3 }));
  await docs.click('form[data-type="resume"] button');
  await answered("resumed", since, '"topic":"retail"');
  check(true, `playground: /ws/sub/retail setup → ready, snapshot, message; resume from ${lastPrice.partition}:${lastPrice.seqNo - 3} → resumed`);
  const ops = await docs.$$eval(".op", (els) => els.map((e) => e.dataset.path));
  check(ops.includes("/publish") && ops.includes("/ws/sub/{topic}"), `playground: the HTTP API lists ${ops.length} operations`);
  await docs.screenshot({ path: shot.replace(/\.png$/, "-docs.png"), fullPage: false });

  // 5. The dashboard: charts fill from /metrics while the UI's two connections stream.
  const dash = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  dash.on("pageerror", (e) => failures.push(`dashboard page error: ${e.message}`));
  sameOriginOnly(dash, new URL(base).origin, failures);
  await dash.goto(base + "/dashboard");
  await dash.waitForFunction(() => window.pricefeedDashboard?.scrapes >= 3, null, { timeout: 20_000 });
  // A 2 s interval with no price on a channel happens when the machine pauses: wait for one
  // where both channels delivered.
  await dash.waitForFunction(
    () => {
      const d = window.pricefeedDashboard.charts.delivered.series;
      return ["vip", "retail"].every((c) => (d.get(c)?.at(-1) ?? 0) > 0);
    },
    null,
    { timeout: 30_000 },
  );
  const last = await dash.evaluate(() =>
    Object.fromEntries(
      Object.entries(window.pricefeedDashboard.charts).map(([k, c]) => [
        k,
        Object.fromEntries([...c.series].map(([name, list]) => [name, list.at(-1)])),
      ]),
    ),
  );
  const node = await dash.evaluate(async () => [window.pricefeedDashboard.node, (await (await fetch("/stats")).json()).node]);
  check(node[0] !== null && node[0] === node[1], `dashboard: the scrapes name their edge (${node[0]}, /stats says ${node[1]})`);
  check(last.connections.connections >= 2, `dashboard: ${last.connections.connections} connections`);
  check(last.delivered.vip > 0 && last.delivered.retail > 0, `dashboard: delivered/s vip ${Math.round(last.delivered.vip)}, retail ${Math.round(last.delivered.retail)}`);
  check(last.records["raw in"] > 0, `dashboard: raw records/s ${Math.round(last.records["raw in"])}`);
  check(last.latency.p50 > 0 && last.latency.p99 >= last.latency.p50, `dashboard: latency p50 ${last.latency.p50} ms, p99 ${last.latency.p99} ms`);
  await dash.screenshot({ path: shot.replace(/\.png$/, "-dashboard.png"), fullPage: true });
  check(failures.length === 0, `no page or console errors ${failures.length ? failures.join("; ") : ""}`);
} finally {
  await browser.close();
  proxy.close();
}
