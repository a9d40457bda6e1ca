// The client library's failover in Node: given two edge nodes, it takes a snapshot and prices from
// the first; the test (tests/client_failover.rs) kills that node when told which one it is; the
// library moves to the other node, resumes there, and neither misses nor repeats a price by its
// own checks. Usage: PRICEFEED_URLS=http://a,http://b node node-failover.mjs
import { WebSocket } from "ws";
import { SubSocket } from "../../src/http/web/client.js";

const bases = process.env.PRICEFEED_URLS.split(",");
const session = await (await fetch(`${bases[0]}/demo/session`)).json();
const token = session.channels.find((c) => c.name === "vip").token;

function check(ok, what) {
  if (!ok) throw new Error(what);
  console.log(`ok: ${what}`);
}

const until = (fn, ms, what) =>
  new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => (fn() ? resolve() : Date.now() - t0 > ms ? reject(new Error(`timed out: ${what}`)) : setTimeout(tick, 50));
    tick();
  });

const s = SubSocket.byTopics(
  bases.map((b) => b.replace(/^http/, "ws")),
  ["vip"],
  { token, WebSocket, reconnect: { initialMs: 100, maxMs: 2000, factor: 2, jitter: 0.5 } },
);
const gaps = [];
const failovers = [];
s.on("gap", (g) => gaps.push(g));
s.on("failover", (f) => failovers.push(f));
await until(() => s.stats.snapshots >= 1 && s.stats.messages >= 30, 30_000, "snapshot and 30 prices");
const first = s.url;
check(first === bases[0].replace(/^http/, "ws") + "/ws", `on the first node: ${first}`);
const before = { ...s.stats };
// The test kills this node now.
console.log(`KILL ${first}`);
await until(() => s.stats.resumed > before.resumed && s.state === "open", 30_000, "resumed on another node");
check(s.url !== first, `moved to ${s.url}`);
check(failovers.length >= 1 && failovers[0].from === first, `a failover event from ${first}`);
await until(() => s.stats.messages > before.messages + 60, 30_000, "live on the second node");
check(s.stats.snapshots === before.snapshots, "resumed without a new snapshot");
check(gaps.length === 0 && s.stats.gaps === 0 && s.stats.duplicates === 0, "no gap, no duplicate");
s.close();
console.log("client failover: all passed");
process.exit(0);
