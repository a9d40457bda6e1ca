// pricefeed client: a small ES module for browsers and Node (22+, or pass a WebSocket class).
// Served by every edge at /client.js; documented in docs/client.md.
//
//   import { SubSocket } from "/client.js";
//   const s = SubSocket.byTopics("ws://127.0.0.1:8080", ["vip"], { token });
//   // or several edge nodes: it moves to the next when one fails, and resumes there
//   const s = SubSocket.byTopics(["wss://edge-a.example", "wss://edge-b.example"], ["vip"], { token });
//   s.on("price", (m) => console.log(m.topic, m.data.symbol, m.data.bid, m.data.ask));
//   // a size-tiered channel's prices also carry their ladder, one bid and ask per size band
//   // (null: the book is too thin for that size):
//   //   m.data.ladder = { pricing: "vwap", bands: [{ up_to: "1000000", bid: "1.08402", ask: "1.08421" }, …] }
//
// It keeps, per topic and partition, the last seqNo it took in (a Kafka offset), and on every
// reconnect resumes from there in the setup itself, so a dropped connection costs no price and
// repeats none. It checks the sequence it receives: a duplicate is dropped and counted; on an
// unfiltered subscription a message whose `prev` (the record before it in its partition) is past
// the last seqNo taken in is reported as a "gap" event (as is the edge's resume_gap). seqNos are
// Kafka offsets and need not be consecutive: with transactional delivery, commit markers take
// offsets too, and `prev` steps over them.
//
// Two more options: `maxRate` (at most that many prices per second per symbol, always the
// latest: a throttled topic starts from a snapshot on every reconnect, as its seqNos are no
// complete position) and `transport: "sse"` (Server-Sent Events on /sse/{topic}, for networks
// that block WebSockets; read-only: no publish).

/**
 * Whether message `f` skips a record after `last` (the last seqNo taken in for its partition):
 * its `prev` is the record before it, so records were missed when `prev` is past `last`.
 * (An edge older than `prev` sends consecutive seqNos only.)
 */
export function isGap(f, last) {
  return typeof f.prev === "number" ? f.prev > last : f.seqNo !== last + 1;
}

const DEFAULTS = {
  reconnect: { initialMs: 250, maxMs: 10_000, factor: 2, jitter: 0.2 },
  // The browser answers the edge's WebSocket pings but cannot see them; a JSON ping this often
  // (and no frame at all for pingMs + pongTimeoutMs) tells a dead connection from a quiet one.
  pingMs: 15_000,
  pongTimeoutMs: 10_000,
  // A token given as a function is fetched again and sent on the open socket this long before
  // the current one expires.
  refreshBeforeExpiryMs: 30_000,
  publishTimeoutMs: 10_000,
};

// Close codes after which reconnecting cannot help unless the token changes.
const AUTH_CLOSE = 1008;

export class SubSocket {
  /**
   * One topic over `/ws/sub/{topic}`: `url` is that endpoint's URL, or a list of them (one per
   * edge node, all for the same topic).
   */
  static byUrl(url, options = {}) {
    const urls = [url].flat();
    const topics = urls.map((u) => {
      const m = /^(wss?:\/\/[^/]+)(?:\/.*)?\/ws\/sub\/([^/?#]+)/.exec(u);
      if (!m) throw new Error(`not a /ws/sub/{topic} URL: ${u}`);
      return decodeURIComponent(m[2]);
    });
    if (urls.length === 0) throw new Error("no URL");
    if (new Set(topics).size !== 1) throw new Error(`the URLs name different topics: ${topics.join(", ")}`);
    return new SubSocket({ urls, pathTopic: topics[0], topics: [], ...options });
  }

  /**
   * Several topics over `/ws`: `base` is the edge's ws:// or wss:// origin, or a list of them
   * (one per edge node).
   */
  static byTopics(base, topics, options = {}) {
    const urls = [base].flat().map((b) => b.replace(/\/+$/, "") + "/ws");
    if (urls.length === 0) throw new Error("no URL");
    return new SubSocket({ urls, pathTopic: null, topics, ...options });
  }

  constructor(options) {
    this.options = { ...DEFAULTS, ...options };
    this.options.reconnect =
      options.reconnect === false ? false : { ...DEFAULTS.reconnect, ...(options.reconnect || {}) };
    /** The edge nodes, tried in turn; `url` is the one in use. */
    this.urls = options.urls ?? [options.url];
    this.node = 0;
    this.pathTopic = options.pathTopic;
    /** "websocket" or "sse". */
    this.transport = options.transport === "sse" ? "sse" : "websocket";
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (this.transport === "sse") {
      const ES = options.EventSource || globalThis.EventSource;
      if (!ES) throw new Error("no EventSource class: pass options.EventSource");
      this.WebSocket = sseSocket(ES);
    }
    if (!this.WebSocket) throw new Error("no WebSocket class: pass options.WebSocket (e.g. from the ws package)");
    /** topic → { symbols: string[] | null, maxRate: number | null } for every topic wanted. */
    this.wanted = new Map();
    const rate = (t) => (typeof options.maxRate === "object" ? options.maxRate?.[t] : options.maxRate) ?? null;
    for (const t of this.pathTopic ? [this.pathTopic] : options.topics) {
      this.wanted.set(t, { symbols: options.symbols?.[t] ?? null, maxRate: rate(t) });
    }
    /** topic → the edge's maxRate when it throttles the topic (the client's or the token's). */
    this.throttled = new Map();
    /** Throttled topics: topic → Map(symbol → last seqNo taken in). */
    this.symbolSeq = new Map();
    /** topic → Map(partition → last seqNo taken in). */
    this.positions = new Map();
    /** topic → the epoch (Kafka topic id) the positions are in. */
    this.epochs = new Map();
    /** topic → true when the edge filters it by symbol (seqNos then skip by design). */
    this.filtered = new Map();
    this.listeners = new Map();
    this.pendingAcks = new Map();
    this.stats = { messages: 0, snapshots: 0, duplicates: 0, gaps: 0, reconnects: 0, failovers: 0, resumed: 0, replayed: 0 };
    this.state = "idle";
    this.attempt = 0;
    this.closedByUser = false;
    this.timers = new Set();
    queueMicrotask(() => this.#connect());
  }

  // ---- events -------------------------------------------------------------------------------

  /** The edge node in use (or being connected to). */
  get url() {
    return this.urls[this.node % this.urls.length];
  }

  /** Listens to an event; returns a function that stops listening. */
  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event)?.delete(fn);
  }

  #emit(event, value) {
    for (const fn of this.listeners.get(event) ?? []) {
      try {
        fn(value);
      } catch (e) {
        console.error(`pricefeed: a "${event}" listener threw`, e);
      }
    }
  }

  #setState(state, extra = {}) {
    this.state = state;
    this.#emit("state", { state, attempt: this.attempt, url: this.url, ...extra });
  }

  // ---- requests -----------------------------------------------------------------------------

  /**
   * Subscribes (or changes the symbol filter or rate of) a topic; kept across reconnects.
   * `maxRate`: at most that many prices per second per symbol, always the latest.
   */
  subscribe(topic, symbols = null, { maxRate = null } = {}) {
    this.wanted.set(topic, { symbols, maxRate });
    this.positions.delete(topic);
    this.#send(subscribeFrame(topic, this.wanted.get(topic)));
  }

  unsubscribe(topic) {
    this.wanted.delete(topic);
    this.positions.delete(topic);
    this.#send({ type: "unsubscribe", topic });
  }

  /** Publishes a raw price (needs the publish right); resolves with "ok" or "duplicate". */
  publish(topic, messageId, payload) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingAcks.delete(messageId);
        reject(new Error(`no ack for ${messageId} within ${this.options.publishTimeoutMs} ms`));
      }, this.options.publishTimeoutMs);
      this.pendingAcks.set(messageId, { resolve, timer });
      if (!this.#send({ type: "publish", topic, messageId, payload })) {
        clearTimeout(timer);
        this.pendingAcks.delete(messageId);
        reject(new Error("not connected"));
      }
    });
  }

  /** The resume position of a topic: { partition: last seqNo }. */
  position(topic) {
    return Object.fromEntries(this.positions.get(topic) ?? []);
  }

  /** Closes for good (no reconnect). */
  close() {
    this.closedByUser = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.ws?.close(1000, "client closed");
    this.#setState("closed");
  }

  /**
   * Drops the connection as a network failure would, and reconnects (resuming) after `delayMs`.
   * For tests and for apps that know the network changed.
   */
  interrupt(delayMs = 0) {
    if (!this.ws) return;
    const ws = this.ws;
    this.#detach(ws);
    ws.close(4000, "interrupted by the client");
    this.#scheduleReconnect(delayMs);
  }

  // ---- connection ---------------------------------------------------------------------------

  #later(fn, ms) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  async #token() {
    const t = this.options.token;
    return typeof t === "function" ? await t() : t;
  }

  async #connect() {
    if (this.closedByUser) return;
    this.#setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let token;
    try {
      token = await this.#token();
    } catch (e) {
      if (this.closedByUser) return;
      this.#emit("error", { code: "token", message: String(e) });
      this.#scheduleReconnect();
      return;
    }
    if (this.closedByUser) return; // closed while the token was being fetched
    const ws = new this.WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      ws.send(JSON.stringify(this.#setupFrame(token)));
      this.lastHeard = Date.now();
      this.#heartbeat(ws);
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      let frame;
      try {
        frame = JSON.parse(typeof ev.data === "string" ? ev.data : String(ev.data));
      } catch {
        this.#emit("error", { code: "client", message: "a frame that is not JSON" });
        return;
      }
      this.#onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.#detach(ws);
      const code = ev.code;
      const retry =
        !this.closedByUser &&
        this.options.reconnect !== false &&
        (code !== AUTH_CLOSE || typeof this.options.token === "function");
      this.#emit("close", { code, reason: ev.reason, willReconnect: retry });
      if (retry) {
        // The node failed or went away (a close the client did not ask for): try the next one.
        this.#failover();
        this.#scheduleReconnect();
      }
      else this.#setState("closed", { code, reason: ev.reason });
    };
    ws.onerror = () => {}; // a close follows
  }

  #detach(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (this.ws === ws) this.ws = null;
    clearTimeout(this.pingTimer);
    clearTimeout(this.refreshTimer);
  }

  /** Moves to the next edge node, if there is more than one. */
  #failover() {
    if (this.urls.length < 2) return;
    const from = this.url;
    this.node = (this.node + 1) % this.urls.length;
    this.stats.failovers += 1;
    this.#emit("failover", { from, to: this.url });
  }

  #scheduleReconnect(delayMs) {
    const r = this.options.reconnect || DEFAULTS.reconnect;
    // Every node is tried once at the initial delay before the delay grows: a dead node costs
    // one short wait, not the backoff of a whole cluster.
    const round = Math.floor(this.attempt / this.urls.length);
    const backoff = Math.min(r.maxMs, r.initialMs * r.factor ** round);
    const delay = delayMs ?? Math.round(backoff * (1 + r.jitter * (Math.random() * 2 - 1)));
    this.attempt += 1;
    this.stats.reconnects += 1;
    this.#setState("reconnecting", { delayMs: delay });
    this.#later(() => this.#connect(), delay);
  }

  /** setup with the topics to subscribe and, for those with a position, where to resume. */
  #setupFrame(token) {
    const topics = [];
    const resume = {};
    for (const [topic, want] of this.wanted) {
      if (!plain(want)) continue; // after ready (#afterReady): setup carries no filter or rate
      const pos = this.positions.get(topic);
      if (pos && pos.size > 0) resume[topic] = Object.fromEntries(pos);
      else if (topic !== this.pathTopic) topics.push(topic);
    }
    const frame = { type: "setup", token, topics };
    if (Object.keys(resume).length > 0) {
      frame.resume = resume;
      // The positions' epoch: if the topic was deleted and created again since, the edge says
      // resume_gap and sends a fresh snapshot instead of resuming into the new topic's records.
      const epochs = Object.fromEntries(Object.keys(resume).filter((t) => this.epochs.has(t)).map((t) => [t, this.epochs.get(t)]));
      if (Object.keys(epochs).length > 0) frame.epochs = epochs;
    }
    return frame;
  }

  /**
   * Topics with a symbol filter or a rate, which setup cannot carry: a `subscribe` (throttled
   * topics always: their seqNos are no position to resume from) or a `resume`.
   */
  #afterReady() {
    for (const [topic, want] of this.wanted) {
      if (plain(want)) continue;
      const pos = this.positions.get(topic);
      if (want.maxRate || !pos || pos.size === 0) {
        this.positions.delete(topic);
        this.#send(subscribeFrame(topic, want));
      } else {
        const epoch = this.epochs.get(topic);
        this.#send({ type: "resume", topic, from: Object.fromEntries(pos), ...(want.symbols ? { symbols: want.symbols } : {}), ...(epoch ? { epoch } : {}) });
      }
    }
  }

  #heartbeat(ws) {
    const tick = () => {
      if (this.ws !== ws) return;
      const quiet = Date.now() - this.lastHeard;
      if (quiet > this.options.pingMs + this.options.pongTimeoutMs) {
        this.interrupt(); // dead: nothing at all, not even our pong
        return;
      }
      this.#send({ type: "ping" });
      this.pingTimer = setTimeout(tick, this.options.pingMs);
    };
    this.pingTimer = setTimeout(tick, this.options.pingMs);
  }

  #send(frame) {
    if (!this.ws || this.ws.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  // ---- frames -------------------------------------------------------------------------------

  #onFrame(f) {
    switch (f.type) {
      case "message":
        return this.#onMessage(f);
      case "snapshot":
        return this.#onSnapshot(f);
      case "ready": {
        const first = this.state !== "open";
        this.attempt = 0;
        this.#setState("open", { sessionId: f.sessionId, transport: this.transport });
        this.#scheduleRefresh(f.expiresAt);
        if (first) this.#afterReady();
        return this.#emit("ready", f);
      }
      case "subscribed":
        this.filtered.set(f.topic, Array.isArray(f.symbols));
        if (f.maxRate) this.throttled.set(f.topic, f.maxRate);
        else this.throttled.delete(f.topic);
        if (f.epoch) this.epochs.set(f.topic, f.epoch);
        return this.#emit("subscribed", f);
      case "unsubscribed":
        return this.#emit("unsubscribed", f);
      case "resumed":
        this.stats.resumed += 1;
        this.stats.replayed += f.replayed;
        return this.#emit("resumed", f);
      case "ack": {
        const p = this.pendingAcks.get(f.messageId);
        if (p) {
          clearTimeout(p.timer);
          this.pendingAcks.delete(f.messageId);
          p.resolve(f.status);
        }
        return this.#emit("ack", f);
      }
      case "pong":
        return;
      case "error":
        if (f.code === "resume_gap") {
          // The edge could not resume without a gap; a fresh snapshot follows.
          // Its positions may be past the new log's end: start over from that snapshot.
          this.positions.delete(f.topic);
          this.stats.gaps += 1;
          this.#emit("gap", { topic: f.topic, reason: f.message, fromServer: true });
        }
        return this.#emit("error", f);
      default:
        return this.#emit("frame", f);
    }
  }

  #partitions(topic) {
    let m = this.positions.get(topic);
    if (!m) this.positions.set(topic, (m = new Map()));
    return m;
  }

  #onSnapshot(f) {
    if (f.epoch) this.epochs.set(f.topic, f.epoch);
    const parts = this.#partitions(f.topic);
    for (const [p, upTo] of Object.entries(f.upTo)) {
      const prev = parts.get(p);
      if (prev === undefined || upTo > prev) parts.set(p, upTo);
    }
    this.stats.snapshots += 1;
    this.#emit("snapshot", f);
  }

  #onMessage(f) {
    if (this.throttled.has(f.topic)) {
      // One price per symbol per interval, the latest: a held price may follow later ones of
      // other symbols in its partition, so the order (and duplicates) are per symbol.
      let last = this.symbolSeq.get(f.topic);
      if (!last) this.symbolSeq.set(f.topic, (last = new Map()));
      const key = f.data?.symbol;
      if (last.has(key) && f.seqNo <= last.get(key)) {
        this.stats.duplicates += 1;
        return;
      }
      last.set(key, f.seqNo);
      this.stats.messages += 1;
      return this.#emit("price", f);
    }
    const parts = this.#partitions(f.topic);
    const p = String(f.partition);
    const last = parts.get(p);
    if (last !== undefined && f.seqNo <= last) {
      this.stats.duplicates += 1; // never shown twice
      return;
    }
    if (last !== undefined && isGap(f, last) && !f.conflated && !this.filtered.get(f.topic)) {
      this.stats.gaps += 1;
      this.#emit("gap", { topic: f.topic, partition: f.partition, after: last, prev: f.prev, got: f.seqNo });
    }
    parts.set(p, f.seqNo);
    this.stats.messages += 1;
    this.#emit("price", f);
  }

  #scheduleRefresh(expiresAt) {
    clearTimeout(this.refreshTimer);
    if (typeof this.options.token !== "function" || !expiresAt) return;
    const ws = this.ws;
    const inMs = expiresAt * 1000 - Date.now() - this.options.refreshBeforeExpiryMs;
    this.refreshTimer = setTimeout(async () => {
      if (this.ws !== ws) return;
      try {
        // A refresh keeps every subscription; `topics` stays empty.
        this.#send({ type: "setup", token: await this.#token(), topics: [] });
      } catch (e) {
        this.#emit("error", { code: "token", message: String(e) });
      }
    }, Math.min(Math.max(inMs, 1_000), 2 ** 31 - 1));
  }
}

/** Subscribed with nothing setup cannot say. */
function plain(want) {
  return !want.symbols && !want.maxRate;
}

function subscribeFrame(topic, want) {
  return { type: "subscribe", topic, ...(want.symbols ? { symbols: want.symbols } : {}), ...(want.maxRate ? { maxRate: want.maxRate } : {}) };
}

/**
 * The Server-Sent Events transport as a WebSocket look-alike, so that SubSocket drives it the
 * same way: the frames SubSocket sends become one EventSource per topic on /sse/{topic} (the
 * token, symbols, maxRate and position in the query), and every event's data is the frame a
 * WebSocket would have carried. An EventSource that fails closes the whole "socket": SubSocket
 * then reconnects (or fails over) and resumes from its own positions, as with a WebSocket.
 */
function sseSocket(EventSource) {
  return class SseSocket {
    constructor(url) {
      const m = /^ws(s?):\/\/([^/]+)/.exec(url);
      this.base = m ? `http${m[1]}://${m[2]}` : url.replace(/\/ws.*$/, "");
      this.pathTopic = /\/ws\/sub\/([^/?#]+)/.exec(url)?.[1];
      this.readyState = 1;
      this.streams = new Map(); // topic → { es, query, lastEventId }
      setTimeout(() => this.onopen && this.onopen(), 0);
    }
    #deliver(frame) {
      setTimeout(() => this.readyState === 1 && this.onmessage && this.onmessage({ data: JSON.stringify(frame) }), 0);
    }
    #open(topic, query) {
      this.streams.get(topic)?.es.close();
      const q = new URLSearchParams({ token: this.token, ...query });
      const es = new EventSource(`${this.base}/sse/${encodeURIComponent(topic)}?${q}`);
      const stream = { es, query, lastEventId: query.lastEventId };
      this.streams.set(topic, stream);
      es.onmessage = (e) => {
        if (this.readyState !== 1 || this.streams.get(topic) !== stream) return;
        if (e.lastEventId) stream.lastEventId = e.lastEventId;
        if (e.data.startsWith('{"type":"ready"')) return; // the socket's own ready was sent
        this.onmessage && this.onmessage({ data: e.data });
      };
      es.onerror = () => {
        if (this.readyState !== 1 || this.streams.get(topic) !== stream) return;
        this.close(1006, "event stream failed");
      };
    }
    send(text) {
      const f = JSON.parse(text);
      switch (f.type) {
        case "setup": {
          const refresh = this.token !== undefined;
          this.token = f.token;
          if (refresh) {
            for (const [topic, s] of this.streams) this.#open(topic, { ...s.query, ...(s.lastEventId ? { lastEventId: s.lastEventId } : {}) });
          }
          for (const t of [...(f.topics ?? []), ...(this.pathTopic && !refresh ? [this.pathTopic] : [])]) {
            if (!this.streams.has(t) && !(f.resume ?? {})[t]) this.#open(t, {});
          }
          for (const [t, from] of Object.entries(f.resume ?? {})) this.#open(t, positionQuery(from, f.epochs?.[t]));
          let exp = 0;
          try {
            exp = JSON.parse(atob(f.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).exp;
          } catch {}
          return this.#deliver({ type: "ready", sessionId: "sse", expiresAt: exp });
        }
        case "subscribe":
          return this.#open(f.topic, { ...(f.symbols ? { symbols: f.symbols.join(",") } : {}), ...(f.maxRate ? { maxRate: String(f.maxRate) } : {}) });
        case "resume":
          return this.#open(f.topic, { ...(f.symbols ? { symbols: f.symbols.join(",") } : {}), ...positionQuery(f.from, f.epoch) });
        case "unsubscribe":
          this.streams.get(f.topic)?.es.close();
          this.streams.delete(f.topic);
          return this.#deliver({ type: "unsubscribed", topic: f.topic });
        case "ping":
          return this.#deliver({ type: "pong" });
        default:
          return this.#deliver({ type: "error", code: "bad_request", message: `${f.type} needs the WebSocket transport` });
      }
    }
    close(code = 1000, reason = "") {
      if (this.readyState !== 1) return;
      this.readyState = 3;
      for (const s of this.streams.values()) s.es.close();
      this.streams.clear();
      setTimeout(() => this.onclose && this.onclose({ code, reason }), 0);
    }
  };
}

/** A resume position as the event stream's Last-Event-ID: `<seq of p0>,<seq of p1>,…@<epoch>`. */
function positionQuery(from, epoch) {
  const n = Math.max(-1, ...Object.keys(from).map(Number)) + 1;
  const seqs = [];
  for (let p = 0; p < n; p++) {
    if (from[p] === undefined) return {}; // not a position over every partition: a snapshot
    seqs.push(from[p]);
  }
  return n > 0 ? { lastEventId: `${seqs.join(",")}@${epoch ?? ""}` } : {};
}
