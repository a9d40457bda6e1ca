// resume-storm: VUS clients subscribe and read; at DROP_AT they all drop their sockets together,
// stay away for AWAY while the feed keeps going, then reconnect at once and resume from their
// last seqNo per partition (`setup` with `resume`). Checks that every client got `resumed`, that
// the first prices after it continue each partition with no gap and no duplicate (the missed
// prices are replayed), and that live prices follow until END.
//
//   k6 run -e VUS=50 -e DROP_AT=10 -e AWAY=3 -e END=20 loadtest/k6/resume-storm.js   (seconds)
import http from "k6/http";
import { WebSocket } from "k6/experimental/websockets";
import { setTimeout } from "k6/timers";
import { check } from "k6";
import { Counter, Trend } from "k6/metrics";
import { BASE, WS_URL, Tracker, handle, metrics, pick, tokens } from "./lib.js";

const VUS = Number(__ENV.VUS || 50);
const DROP_AT_S = parseFloat(__ENV.DROP_AT || "10");
const AWAY_S = parseFloat(__ENV.AWAY || "3");
const END_S = parseFloat(__ENV.END || "20");
const LIVE_WAIT_S = parseFloat(__ENV.LIVE_WAIT || "30");
const resumed = new Counter("resumes_completed");
const resumeGaps = new Counter("resume_gaps");
const replayed = new Trend("resume_replayed_prices");
const resumeTime = new Trend("time_to_resumed_ms", true);
// A snapshot after a resume with every partition's position would replace the missed prices
// rather than replay them (and hide a gap): it must not happen.
const resumeSnapshots = new Counter("snapshots_on_resume");

export const options = {
  scenarios: {
    storm: { executor: "per-vu-iterations", vus: VUS, iterations: 1, maxDuration: `${Math.ceil(END_S + LIVE_WAIT_S) + 60}s` },
  },
  thresholds: {
    protocol_errors: ["count==0"],
    seq_gaps: ["count==0"],
    seq_duplicates: ["count==0"],
    resume_gaps: ["count==0"],
    snapshots_on_resume: ["count==0"],
    [`resumes_completed`]: [`count==${VUS}`],
    setup_ok: ["rate==1"],
    "checks{check:prices before the drop}": ["rate==1"],
    "checks{check:resumed}": ["rate==1"],
    "checks{check:what the edge read meanwhile was replayed}": ["rate==1"],
    "checks{check:live prices after the resume}": ["rate==1"],
  },
  summaryTrendStats: ["avg", "med", "p(90)", "p(99)", "max"],
};

export function setup() {
  return { tokens: tokens(), start: Date.now() };
}

export default function (data) {
  const { channel, token } = pick(data.tokens);
  const tracker = new Tracker(channel);
  const first = open(channel, token, tracker, null);
  setTimeout(() => {
    check(tracker, { "prices before the drop": (t) => t.prices > 0 });
    first.ws.close();
  }, Math.max(0, data.start + DROP_AT_S * 1000 - Date.now()));
  setTimeout(() => {
    const before = tracker.prices;
    // Did the edge read anything of this channel past our position while we were away? Then
    // the resume must replay it (a broker pause can leave nothing to replay).
    const stats = http.get(`${BASE}/stats`);
    const topic = stats.status === 200 ? stats.json().topics.find((t) => t.topic === channel) : null;
    const movedOn =
      topic !== null && topic !== undefined &&
      Object.entries(topic.lastSeqNo).some(([p, seq]) => tracker.last[p] !== undefined && seq > tracker.last[p]);
    const again = open(channel, token, tracker, tracker.position());
    // At END, or as soon after as a live price has come (up to LIVE_WAIT seconds more: the
    // broker can pause for seconds; a missing price fails, a late one is a latency).
    const end = data.start + END_S * 1000;
    const finish = () => {
      const live = again.state.resumed && tracker.prices > before + again.state.replayed;
      if (!live && Date.now() < end + LIVE_WAIT_S * 1000) {
        setTimeout(finish, 250);
        return;
      }
      check(again.state, { resumed: (s) => s.resumed });
      check(again.state, { "what the edge read meanwhile was replayed": (s) => !movedOn || s.replayed > 0 });
      check(tracker, { "live prices after the resume": () => live });
      again.ws.close();
    };
    setTimeout(finish, Math.max(1000, end - Date.now()));
  }, Math.max(0, data.start + (DROP_AT_S + AWAY_S) * 1000 - Date.now()));
}

function open(channel, token, tracker, resume) {
  const ws = new WebSocket(WS_URL);
  const state = { ready: false, resumed: false, replayed: 0 };
  const opened = Date.now();
  tracker.replaying = resume !== null;
  ws.addEventListener("open", () => {
    const setup = resume ? { type: "setup", token, resume } : { type: "setup", token, topics: [channel] };
    ws.send(JSON.stringify(setup));
  });
  ws.addEventListener("message", (e) => {
    const f = handle(e.data, tracker);
    if (f.type === "ready") {
      state.ready = true;
      metrics.setupOk.add(1);
    } else if (f.type === "resumed") {
      state.resumed = true;
      tracker.replaying = false;
      resumed.add(1);
      state.replayed = f.replayed;
      replayed.add(f.replayed);
      resumeTime.add(Date.now() - opened);
    } else if (f.type === "snapshot" && resume !== null) {
      resumeSnapshots.add(1);
    } else if (f.type === "error" && f.code === "resume_gap") {
      resumeGaps.add(1);
    }
  });
  ws.addEventListener("error", (e) => console.warn(`VU ${__VU}: ${e.error}`));
  ws.addEventListener("close", () => {
    if (!state.ready) metrics.setupOk.add(0);
  });
  return { ws, state };
}
