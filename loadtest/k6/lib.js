// Shared by the k6 scripts: tokens, the Micro Socket client side of one connection, and the
// per-partition seqNo tracking that counts gaps and duplicates (the same rule as /client.js:
// on an unfiltered subscription, a message whose `prev` is past the last seqNo is a gap).
//
// Settings (k6 -e KEY=VALUE or the environment):
//   PRICEFEED_URL   the edge's HTTP base, default http://127.0.0.1:8080
//   CHANNELS        comma-separated channels to spread the virtual users over (default: every
//                   channel /demo/session offers)
//   JWT_SECRET      sign HS256 client tokens here instead of asking /demo/session (for a stack
//                   not in demo mode; the edge's [auth] secret)
//   JWT_ISSUER, JWT_AUDIENCE   claims to add when the edge checks them
import http from "k6/http";
import crypto from "k6/crypto";
import encoding from "k6/encoding";
import { Counter, Rate, Trend } from "k6/metrics";
import { isGap } from "./seq.js";
// WebSockets come from k6/experimental/websockets: k6 1.1.0 (the pinned version) has no
// k6/websockets yet; the API is the same.

export const BASE = (__ENV.PRICEFEED_URL || "http://127.0.0.1:8080").replace(/\/$/, "");
export const WS_URL = BASE.replace(/^http/, "ws") + "/ws";

export const metrics = {
  prices: new Counter("prices_received"),
  gaps: new Counter("seq_gaps"),
  duplicates: new Counter("seq_duplicates"),
  errors: new Counter("protocol_errors"),
  latency: new Trend("price_latency_ms", true),
  setupOk: new Rate("setup_ok"),
  subscribed: new Trend("time_to_snapshot_ms", true),
};

function b64url(s) {
  return encoding.b64encode(s, "rawurl");
}

function sign(claims, secret) {
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.hmac("sha256", secret, `${head}.${body}`, "base64rawurl");
  return `${head}.${body}.${sig}`;
}

// Called from setup(): one token per channel, as [{ channel, token }].
export function tokens() {
  const wanted = (__ENV.CHANNELS || "").split(",").filter((c) => c);
  if (__ENV.JWT_SECRET) {
    if (wanted.length === 0) throw new Error("JWT_SECRET needs CHANNELS (e.g. CHANNELS=vip,retail)");
    const exp = Math.floor(Date.now() / 1000) + 3600;
    return wanted.map((channel) => {
      const claims = { sub: `k6-${channel}`, channels: [channel], exp };
      if (__ENV.JWT_ISSUER) claims.iss = __ENV.JWT_ISSUER;
      if (__ENV.JWT_AUDIENCE) claims.aud = __ENV.JWT_AUDIENCE;
      return { channel, token: sign(claims, __ENV.JWT_SECRET) };
    });
  }
  const res = http.get(`${BASE}/demo/session`);
  if (res.status !== 200) {
    throw new Error(
      `GET ${BASE}/demo/session answered ${res.status}: start the stack with scripts/demo.sh ` +
        `(demo mode), or give JWT_SECRET and CHANNELS to sign tokens here`,
    );
  }
  const list = res.json().channels.map((c) => ({ channel: c.name, token: c.token, symbols: c.symbols }));
  const chosen = wanted.length ? list.filter((c) => wanted.includes(c.channel)) : list;
  if (chosen.length === 0) throw new Error(`none of CHANNELS=${wanted} is served by ${BASE}`);
  return chosen;
}

// The position and the checks of one subscription, kept across reconnects. With a symbol
// filter, seqNos skip the other symbols' records: only duplicates are checked then.
export class Tracker {
  constructor(topic, filtered = false) {
    this.topic = topic;
    this.filtered = filtered;
    this.last = {}; // partition → last seqNo taken in
    this.prices = 0;
    this.gaps = 0;
    this.duplicates = 0;
    this.replaying = false; // between a resume and its `resumed`
  }

  snapshot(f) {
    for (const [p, upTo] of Object.entries(f.upTo)) {
      if (this.last[p] === undefined || upTo > this.last[p]) this.last[p] = upTo;
    }
  }

  message(f) {
    const p = String(f.partition);
    const last = this.last[p];
    if (last !== undefined && f.seqNo <= last) {
      this.duplicates += 1;
      metrics.duplicates.add(1);
      return;
    }
    // `prev` is the record before this one in the partition: past `last`, records were missed.
    // (seqNos are offsets: transaction markers take some, so they need not be consecutive.)
    if (last !== undefined && isGap(f, last) && !f.conflated && !this.filtered) {
      this.gaps += 1;
      metrics.gaps.add(1);
      console.warn(`${this.topic}/${p}: gap, last seqNo ${last}, got ${f.seqNo} after ${f.prev}`);
    }
    this.last[p] = f.seqNo;
    this.prices += 1;
    metrics.prices.add(1);
    // Replayed prices are old by design: latency counts live ones only.
    if (!this.replaying && f.data && typeof f.data.ts === "number") {
      metrics.latency.add(Date.now() - f.data.ts);
    }
  }

  // The `resume` map of a setup: the last seqNo per partition.
  position() {
    return { [this.topic]: { ...this.last } };
  }
}

// Routes one server frame to the tracker; returns the parsed frame.
export function handle(raw, tracker) {
  const f = JSON.parse(raw);
  switch (f.type) {
    case "message":
      tracker.message(f);
      break;
    case "snapshot":
      tracker.snapshot(f);
      break;
    case "error":
      metrics.errors.add(1, { code: f.code });
      console.warn(`error from the edge: ${raw}`);
      break;
  }
  return f;
}

export function pick(list) {
  return list[(__VU - 1) % list.length];
}
