// The client library's gap check, with a stand-in WebSocket that plays the edge's frames: seqNos
// that jump over commit markers (each message's `prev` is the record before it) are no gap; a
// message whose `prev` is past the last seqNo taken in is one, reported once; a filtered
// subscription checks only duplicates. Exits non-zero on any failed check.
import { SubSocket, isGap } from "../../src/http/web/client.js";
import { isGap as k6IsGap } from "../../loadtest/k6/seq.js";

function check(ok, what) {
  if (!ok) throw new Error(what);
  console.log(`ok: ${what}`);
}

check(!isGap({ seqNo: 10, prev: 7 }, 7), "prev equal to the last seqNo: no gap, whatever the jump");
check(!isGap({ seqNo: 10, prev: 6 }, 7), "prev below the last seqNo: no gap");
check(isGap({ seqNo: 10, prev: 8 }, 7), "prev past the last seqNo: a gap");
check(isGap({ seqNo: 9 }, 7) && !isGap({ seqNo: 8 }, 7), "without prev: consecutive seqNos");
for (const [f, last] of [[{ seqNo: 10, prev: 7 }, 7], [{ seqNo: 10, prev: 8 }, 7], [{ seqNo: 9 }, 7], [{ seqNo: 8 }, 7]]) {
  check(k6IsGap(f, last) === isGap(f, last), `k6's rule agrees on ${JSON.stringify(f)} after ${last}`);
}

/** Plays `frames` to the client once it has sent its setup. */
function edge(frames) {
  return class {
    constructor() {
      setTimeout(() => this.onopen && this.onopen(), 0);
    }
    send(text) {
      if (JSON.parse(text).type !== "setup") return;
      for (const f of frames) setTimeout(() => this.onmessage && this.onmessage({ data: JSON.stringify(f) }), 0);
    }
    close() {}
  };
}

const msg = (seqNo, prev) => ({
  type: "message", topic: "vip", partition: 0, seqNo, prev, messageId: `0-${seqNo}`,
  data: { symbol: "EURUSD", bid: "1.1", ask: "1.2", ts: 1 },
});

async function run(frames, symbols = null) {
  const s = SubSocket.byTopics("ws://edge", ["vip"], { token: "t", WebSocket: edge(frames), reconnect: false });
  const gaps = [];
  s.on("gap", (g) => gaps.push(g));
  await new Promise((r) => setTimeout(r, 50));
  s.close();
  return { gaps, stats: s.stats };
}

const start = [
  { type: "ready", sessionId: "s", expiresAt: Math.floor(Date.now() / 1000) + 3600 },
  { type: "subscribed", topic: "vip", partitions: 1, symbols: null },
  { type: "snapshot", topic: "vip", upTo: { 0: 4 }, prices: [] },
];
// Transactional delivery: a marker after every two records (offsets 7, 10, 13 are markers).
let r = await run([...start, msg(5, 4), msg(6, 5), msg(8, 6), msg(9, 8), msg(11, 9), msg(12, 11), msg(14, 12)]);
check(r.stats.messages === 7 && r.gaps.length === 0, `no false gap across commit markers (${JSON.stringify(r.gaps)})`);
// Record 9 lost: 11 says it follows 9.
r = await run([...start, msg(5, 4), msg(6, 5), msg(8, 6), msg(11, 9), msg(12, 11)]);
check(r.gaps.length === 1 && r.gaps[0].after === 8 && r.gaps[0].prev === 9 && r.gaps[0].got === 11,
  `a missed record is a gap (${JSON.stringify(r.gaps)})`);
// A duplicate is dropped and counted, never a gap.
r = await run([...start, msg(5, 4), msg(6, 5), msg(6, 5), msg(8, 6)]);
check(r.stats.duplicates === 1 && r.gaps.length === 0 && r.stats.messages === 3, "a duplicate is dropped");
// The first message after the snapshot must follow what the snapshot covers.
r = await run([...start, msg(9, 8)]);
check(r.gaps.length === 1, "a record missed between the snapshot and the first message is a gap");
// With a symbol filter `prev` may be another symbol's record: not checked.
const filtered = [start[0], { ...start[1], symbols: ["EURUSD"] }, start[2]];
r = await run([...filtered, msg(5, 4), msg(9, 8)]);
check(r.gaps.length === 0, "a filtered subscription checks no gap");
// A throttled subscription (the edge says maxRate): a held price goes out after later prices of
// other symbols, so order and duplicates are per symbol, and skipped seqNos are no gap.
const throttled = [start[0], { ...start[1], maxRate: 2 }, start[2]];
const sym = (symbol, seqNo, prev, conflated) => ({ ...msg(seqNo, prev), data: { ...msg(seqNo, prev).data, symbol }, ...(conflated ? { conflated } : {}) });
r = await run([...throttled, sym("GBPUSD", 9, 8), sym("EURUSD", 7, 6, true), sym("EURUSD", 12, 11), sym("EURUSD", 7, 6)]);
check(r.stats.messages === 3 && r.stats.duplicates === 1 && r.gaps.length === 0,
  `throttled: an older price of another symbol is shown, a repeat of one symbol is not (${JSON.stringify(r.stats)})`);
console.log("client gap checks: all passed");
// The library's timers (token refresh, heartbeat) would keep Node running.
process.exit(0);
