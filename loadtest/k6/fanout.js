// fanout: VUS virtual users each set up with a token, subscribe to one channel (spread over the
// channels), and read for DURATION, counting prices, checking seqNo continuity per partition and
// recording latency from the price's source timestamp (`data.ts`, set by the feed) to arrival.
//
//   k6 run -e VUS=40 -e DURATION=60s -e P99_MS=1000 loadtest/k6/fanout.js
//
// Thresholds: no protocol error, no gap, no duplicate, every client ready, at least one price
// per connection; with P99_MS, p99 latency under it (loadtest/run.sh sets 1000 ms for full runs,
// which the demo on 2 cores with its local Kafka meets; none for CI smoke runs: shared machines
// make timing assertions noise).
import { WebSocket } from "k6/experimental/websockets";
import { setTimeout } from "k6/timers";
import { check } from "k6";
import { Counter } from "k6/metrics";
import { WS_URL, Tracker, handle, metrics, pick, tokens } from "./lib.js";

const VUS = Number(__ENV.VUS || 40);
const LIVE_WAIT_S = parseFloat(__ENV.LIVE_WAIT || "30");
const readyCount = new Counter("clients_ready");
const DURATION = __ENV.DURATION || "30s";

function seconds(d) {
  const m = /^(\d+)(ms|s|m)?$/.exec(d);
  if (!m) throw new Error(`DURATION ${d}: use e.g. 30s, 2m or 500ms`);
  return Number(m[1]) * ({ ms: 0.001, s: 1, m: 60 }[m[2] || "s"]);
}

const thresholds = {
  protocol_errors: ["count==0"],
  seq_gaps: ["count==0"],
  seq_duplicates: ["count==0"],
  setup_ok: ["rate==1"],
  clients_ready: [`count==${VUS}`],
  "checks{check:prices arrived}": ["rate==1"],
};
if (__ENV.P99_MS) thresholds.price_latency_ms = [`p(99)<${Number(__ENV.P99_MS)}`];

export const options = {
  scenarios: {
    fanout: { executor: "per-vu-iterations", vus: VUS, iterations: 1, maxDuration: `${seconds(DURATION) + LIVE_WAIT_S + 60}s` },
  },
  thresholds,
  summaryTrendStats: ["avg", "med", "p(90)", "p(99)", "max"],
};

export function setup() {
  return { tokens: tokens() };
}

export default function (data) {
  const { channel, token } = pick(data.tokens);
  const tracker = new Tracker(channel);
  const ws = new WebSocket(WS_URL);
  const opened = Date.now();
  let ready = false;
  ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "setup", token, topics: [channel] })));
  ws.addEventListener("message", (e) => {
    const f = handle(e.data, tracker);
    if (f.type === "ready") {
      ready = true;
      readyCount.add(1);
      metrics.setupOk.add(1);
    } else if (f.type === "snapshot") {
      metrics.subscribed.add(Date.now() - opened);
    }
  });
  ws.addEventListener("error", (e) => console.warn(`VU ${__VU}: ${e.error}`));
  ws.addEventListener("close", () => {
    if (!ready) metrics.setupOk.add(0);
    check(tracker, { "prices arrived": (t) => t.prices > 0 });
  });
  // At DURATION, or once a first price has come (up to LIVE_WAIT seconds more: the broker can
  // pause for seconds; a missing price fails, a late one is a latency).
  const leave = () => {
    if (tracker.prices > 0 || Date.now() - opened > (seconds(DURATION) + LIVE_WAIT_S) * 1000) ws.close();
    else setTimeout(leave, 250);
  };
  setTimeout(leave, seconds(DURATION) * 1000);
}
