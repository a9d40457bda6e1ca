// pricefeed client: a small ES module for browsers and Node (22+, or pass a WebSocket class).
// Served by every edge at /client.js; documented in docs/client.md.
//
//   import { SubSocket } from "/client.js";
//   const s = SubSocket.byTopics("ws://127.0.0.1:8080", ["vip"], { token });
//   // or several edge nodes: it moves to the next when one fails, and resumes there
//   const s = SubSocket.byTopics(["wss://edge-a.example", "wss://edge-b.example"], ["vip"], { token });
//   s.on("price", (m) => console.log(m.topic, m.data.symbol, m.data.bid, m.data.ask));
//
// It keeps, per topic and partition, the last seqNo it took in (a Kafka offset), and on every
// reconnect resumes from there in the setup itself, so a dropped connection costs no price and
// repeats none. It checks the sequence it receives: a duplicate is dropped and counted; on an
// unfiltered subscription a message whose `prev` (the record before it in its partition) is past
// the last seqNo taken in is reported as a "gap" event (as is the edge's resume_gap). seqNos are
// Kafka offsets and need not be consecutive: with transactional delivery, commit markers take
// offsets too, and `prev` steps over them.

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
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) throw new Error("no WebSocket class: pass options.WebSocket (e.g. from the ws package)");
    /** topic → { symbols: string[] | null } for every topic the caller wants. */
    this.wanted = new Map();
    for (const t of this.pathTopic ? [this.pathTopic] : options.topics) {
      this.wanted.set(t, { symbols: options.symbols?.[t] ?? null });
    }
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

  /** Subscribes (or changes the symbol filter of) a topic; kept across reconnects. */
  subscribe(topic, symbols = null) {
    this.wanted.set(topic, { symbols });
    this.positions.delete(topic);
    this.#send({ type: "subscribe", topic, ...(symbols ? { symbols } : {}) });
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
    for (const [topic] of this.wanted) {
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
      case "ready":
        this.attempt = 0;
        this.#setState("open", { sessionId: f.sessionId });
        this.#scheduleRefresh(f.expiresAt);
        return this.#emit("ready", f);
      case "subscribed":
        this.filtered.set(f.topic, Array.isArray(f.symbols));
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
