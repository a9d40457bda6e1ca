// connect-storm: VUS clients connect, set up and subscribe within WINDOW (arrivals spread evenly),
// each to one symbol (SYMBOL, default the channel's first; a trading UI's watch list, and it keeps
// k6 itself within what it can parse),
// each holds its subscription for HOLD and leaves (once it has had a live price, waiting up to
// LIVE_WAIT seconds more for one). Measures the time from opening the socket to
// the snapshot (`time_to_snapshot_ms`) and checks every client got ready, subscribed, a snapshot
// and then at least one live price, with no protocol error.
//
//   k6 run -e VUS=1000 -e WINDOW=5 -e HOLD=5 loadtest/k6/connect-storm.js   (seconds)
import { WebSocket } from "k6/experimental/websockets";
import { setTimeout } from "k6/timers";
import { check } from "k6";
import { Counter, Trend } from "k6/metrics";
import { WS_URL, Tracker, handle, metrics, pick, tokens } from "./lib.js";

const VUS = Number(__ENV.VUS || 1000);
const WINDOW_S = parseFloat(__ENV.WINDOW || "5");
const HOLD_S = parseFloat(__ENV.HOLD || "5");
const LIVE_WAIT_S = parseFloat(__ENV.LIVE_WAIT || "30");
const refused = new Counter("connections_refused");
const firstPrice = new Trend("time_to_first_price_ms", true);

export const options = {
  scenarios: {
    storm: {
      executor: "per-vu-iterations",
      vus: VUS,
      iterations: 1,
      maxDuration: `${Math.ceil(WINDOW_S + HOLD_S + LIVE_WAIT_S) + 60}s`,
    },
  },
  thresholds: {
    protocol_errors: ["count==0"],
    connections_refused: ["count==0"],
    setup_ok: ["rate==1"],
    "checks{check:subscribed with a snapshot}": ["rate==1"],
    "checks{check:live prices after the snapshot}": ["rate==1"],
  },
  summaryTrendStats: ["avg", "med", "p(90)", "p(99)", "max"],
};

export function setup() {
  return { tokens: tokens(), start: Date.now() + 1000 };
}

export default function (data) {
  const { channel, token, symbols } = pick(data.tokens);
  const symbol = __ENV.SYMBOL || (symbols && symbols[0]) || "EURUSD";
  // Spread the arrivals evenly over the window, from a start shared by every VU.
  const at = data.start + ((__VU - 1) / VUS) * WINDOW_S * 1000;
  setTimeout(() => connect(channel, token, symbol), Math.max(0, at - Date.now()));
}

function connect(channel, token, symbol) {
  const tracker = new Tracker(channel, true);
  const ws = new WebSocket(WS_URL);
  const opened = Date.now();
  let ready = false;
  let snapshot = false;
  ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "setup", token })));
  ws.addEventListener("message", (e) => {
    const f = handle(e.data, tracker);
    if (f.type === "message") {
      // The filter holds: only the subscribed symbol arrives.
      if (f.data.symbol !== symbol) metrics.errors.add(1, { code: "wrong_symbol" });
      if (tracker.prices === 1) firstPrice.add(Date.now() - opened);
    } else if (f.type === "ready") {
      ready = true;
      metrics.setupOk.add(1);
      ws.send(JSON.stringify({ type: "subscribe", topic: channel, symbols: [symbol] }));
    } else if (f.type === "snapshot") {
      snapshot = true;
      metrics.subscribed.add(Date.now() - opened);
    }
  });
  ws.addEventListener("error", (e) => {
    if (!ready) refused.add(1);
    console.warn(`VU ${__VU}: ${e.error}`);
  });
  ws.addEventListener("close", () => {
    if (!ready) metrics.setupOk.add(0);
    check(snapshot, { "subscribed with a snapshot": (s) => s });
    check(tracker, { "live prices after the snapshot": (t) => t.prices > 0 });
  });
  // Leave after HOLD once a live price came; a client still waiting gets up to LIVE_WAIT more
  // seconds (the broker can pause for seconds): a missing price fails, a late one is a latency.
  const leave = () => {
    if (tracker.prices > 0 || Date.now() - opened > (HOLD_S + LIVE_WAIT_S) * 1000) ws.close();
    else setTimeout(leave, 250);
  };
  setTimeout(leave, HOLD_S * 1000);
}
