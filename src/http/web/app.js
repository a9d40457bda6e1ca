// The trading UI at /: two channels side by side, a live row per symbol. Uses /client.js, the
// same library applications use; tokens come from /demo/session (demo mode only).
import { SubSocket } from "/client.js";

const STALE_AFTER_MS = 10_000;
const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;

async function demoSession() {
  const r = await fetch("/demo/session", { cache: "no-store" });
  if (!r.ok) {
    const body = await r.json().catch(() => ({}));
    throw new Error(body.message || `GET /demo/session: ${r.status}`);
  }
  return r.json();
}

// ---- exact decimal arithmetic on the wire's strings (no floating point on prices) ----------

function fracLen(s) {
  const i = s.indexOf(".");
  return i < 0 ? 0 : s.length - i - 1;
}

/** "1.08412" at scale 6 → 1084120n */
function units(s, scale) {
  const neg = s.startsWith("-");
  const [int, frac = ""] = (neg ? s.slice(1) : s).split(".");
  const v = BigInt(int || "0") * 10n ** BigInt(scale) + BigInt((frac + "0".repeat(scale)).slice(0, scale) || "0");
  return neg ? -v : v;
}

/** Spread in tenths of a pip (rounded half up), and the mid in the same scale for up/down. */
function measure(bid, ask, pip) {
  const scale = Math.max(fracLen(bid), fracLen(ask), fracLen(pip));
  const b = units(bid, scale);
  const a = units(ask, scale);
  const p = units(pip, scale);
  const spread = a - b;
  const tenths = (spread * 20n + p) / (2n * p);
  return { spread, scale, tenths, mid: a + b };
}

/** "1000000" → "1M", "2500" → "2.5k", "10" → "10": a band size, exactly (string digits only). */
function size(s) {
  const [int, frac] = s.split(".");
  if (frac !== undefined || int.length < 4) return s;
  const [div, unit] = int.length > 6 ? [6, "M"] : [3, "k"];
  const head = int.slice(0, int.length - div);
  const tail = int.slice(int.length - div).replace(/0+$/, "");
  return `${head}${tail ? "." + tail : ""}${unit}`;
}

function pips(tenths) {
  const sign = tenths < 0n ? "-" : "";
  const t = tenths < 0n ? -tenths : tenths;
  return `${sign}${t / 10n}.${t % 10n}`;
}

// ---- one panel: a channel picker, a state badge and a table ----------------------------------

/** The throttle choices: updates per second per symbol (null: every price). */
const RATES = [
  [null, "every price"],
  [10, "10/s"],
  [2, "2/s"],
  [1, "1/s"],
  [0.2, "1 per 5 s"],
];

class Panel {
  constructor(root, session, channel, onChange) {
    this.session = session;
    this.transport = "websocket";
    this.maxRate = null;
    this.el = document.createElement("section");
    this.el.className = "panel";
    root.appendChild(this.el);
    this.onChange = onChange;
    this.open(channel);
  }

  open(channel) {
    this.socket?.close();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.pending = new Map(); // symbol → the latest price not drawn yet
    this.channel = channel;
    this.rows = new Map();
    const info = this.session.channels.find((c) => c.name === channel);
    this.el.dataset.channel = channel;
    this.el.innerHTML = `
      <div class="panel-head">
        <select aria-label="channel">${this.session.channels
          .map((c) => `<option ${c.name === channel ? "selected" : ""}>${c.name}</option>`)
          .join("")}</select>
        <select aria-label="transport" title="WebSocket, or Server-Sent Events for networks that block WebSockets">
          <option value="websocket" ${this.transport === "websocket" ? "selected" : ""}>WebSocket</option>
          <option value="sse" ${this.transport === "sse" ? "selected" : ""}>SSE</option>
        </select>
        <select aria-label="throttle" title="At most this many updates per second per symbol, always the latest">${RATES.map(
          ([r, label]) => `<option value="${r ?? ""}" ${r === this.maxRate ? "selected" : ""}>${label}</option>`,
        ).join("")}</select>
        <span class="state idle">idle</span>
        <span class="transport"></span>
        <button class="drop" title="Drop the connection for 2 s; the panel resumes from its last seqNo">drop 2 s</button>
        <span class="counters"></span>
      </div>
      <table>
        <thead><tr><th>Symbol</th><th>Bid</th><th>Ask</th><th>Spread (pips)</th><th>seqNo</th><th>Latency ms</th><th>Age s</th></tr></thead>
        <tbody></tbody>
      </table>`;
    this.el.querySelector("select[aria-label=channel]").addEventListener("change", (e) => this.onChange(this, e.target.value));
    this.el.querySelector("select[aria-label=transport]").addEventListener("change", (e) => {
      this.transport = e.target.value;
      this.open(this.channel);
    });
    this.el.querySelector("select[aria-label=throttle]").addEventListener("change", (e) => {
      this.maxRate = e.target.value ? Number(e.target.value) : null;
      this.open(this.channel);
    });
    this.transportLabel = this.el.querySelector(".transport");
    this.el.querySelector(".drop").addEventListener("click", () => this.socket.interrupt(2000));
    this.badge = this.el.querySelector(".state");
    this.counters = this.el.querySelector(".counters");
    const tbody = this.el.querySelector("tbody");
    for (const symbol of info.symbols) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      tr.dataset.symbol = symbol;
      tr.innerHTML = `<td class="symbol">${symbol}</td><td class="bid">—</td><td class="ask">—</td>
        <td class="spread">—</td><td class="seq">—</td><td class="latency">—</td><td class="age">—</td>`;
      tbody.appendChild(tr);
      this.rows.set(symbol, { tr, ladder: null, mid: null, ts: 0, stale: false });
    }
    let first = true;
    const token = async () => {
      // The session's token first; a fresh one on every reconnect (they expire).
      if (first) {
        first = false;
        return info.token;
      }
      const fresh = await demoSession();
      return fresh.channels.find((c) => c.name === channel).token;
    };
    const s = SubSocket.byTopics(wsBase, [channel], { token, transport: this.transport, maxRate: this.maxRate });
    this.socket = s;
    this.rate = null;
    // A socket replaced by a channel switch draws nothing more into this panel.
    const on = (event, fn) => s.on(event, (v) => this.socket === s && fn(v));
    on("state", ({ state, attempt }) => {
      this.badge.className = `state ${state}`;
      this.badge.textContent = state === "reconnecting" ? `reconnecting (${attempt})` : state;
      this.renderCounters();
    });
    on("subscribed", (f) => {
      this.rate = f.maxRate ?? null; // the client's choice, or the token's ceiling
      this.renderCounters();
    });
    on("snapshot", (f) => {
      this.pending.clear(); // what was waiting to be drawn is older than the snapshot
      this.draw(f.prices, false);
    });
    // Prices are drawn once per animation frame, the latest per symbol: a burst of prices costs
    // one layout, and a hidden tab does no drawing at all (it catches up when shown).
    on("price", (m) => {
      this.pending.set(m.data.symbol, m);
      if (this.frame) return;
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        const prices = [...this.pending.values()];
        this.pending.clear();
        this.draw(prices, true);
      });
    });
    on("gap", (g) => {
      console.warn("pricefeed: gap", g);
      this.renderCounters();
    });
    on("error", (e) => console.warn("pricefeed:", e.code, e.message));
  }

  /** Draws prices (with up/down flashes for live ones) in one layout pass. */
  draw(prices, flash) {
    const moved = [];
    for (const m of prices) {
      const move = this.update(m);
      if (flash && move) moved.push(move);
    }
    if (moved.length > 0) {
      // Restart the flash animation: classes off, one layout, classes on.
      for (const [tr] of moved) tr.classList.remove("up", "down");
      void this.el.offsetWidth;
      for (const [tr, dir] of moved) tr.classList.add(dir);
    }
    this.tick();
    this.renderCounters();
  }

  /** Writes one price into its row; returns [row, "up" | "down"] when the mid moved. */
  update(m) {
    const d = m.data;
    const row = this.rows.get(d.symbol);
    if (!row) return null;
    const ins = this.session.instruments[d.symbol];
    const { tenths, spread, scale, mid } = measure(d.bid, d.ask, ins.pip);
    const tr = row.tr;
    tr.classList.remove("empty");
    const move = row.mid !== null && mid !== row.mid ? [tr, mid > row.mid ? "up" : "down"] : null;
    row.mid = mid;
    row.ts = d.ts;
    row.stale = d.stale === true;
    tr.dataset.seq = String(m.seqNo);
    tr.dataset.spread = spread.toString();
    tr.dataset.scale = String(scale);
    tr.querySelector(".bid").textContent = d.bid;
    tr.querySelector(".ask").textContent = d.ask;
    tr.querySelector(".spread").textContent = pips(tenths);
    tr.querySelector(".seq").textContent = `${m.partition}:${m.seqNo}`;
    tr.querySelector(".latency").textContent = String(Math.max(0, Date.now() - d.ts));
    if (d.ladder) {
      // A size-tiered channel: the symbol's ladder goes in a row under its own.
      if (!row.ladder) {
        row.ladder = document.createElement("tr");
        row.ladder.className = "ladder";
        row.ladder.dataset.ladder = d.symbol;
        row.ladder.innerHTML = `<td colspan="7"><div class="bands"></div></td>`;
        tr.after(row.ladder);
      }
      this.drawLadder(row.ladder, d.ladder, ins.pip, m.seqNo);
    }
    return move;
  }

  /**
   * One column per size band: "≤ size", the bid, the ask and the spread in pips. A side the
   * book is too thin to fill (null on the wire) shows "—".
   */
  drawLadder(el, ladder, pip, seqNo) {
    const bands = ladder.bands;
    const grid = el.querySelector(".bands");
    if (grid.dataset.n !== String(bands.length)) {
      const cells = (cls) => bands.map(() => `<span class="${cls}"></span>`).join("");
      const method = ladder.pricing === "vwap" ? "VWAP" : "full amount";
      grid.style.gridTemplateColumns = `auto repeat(${bands.length}, auto)`;
      grid.innerHTML = `<span class="head method">${method}</span>${cells("band-size")}
        <span class="head">bid</span>${cells("band-bid")}<span class="head">ask</span>${cells("band-ask")}
        <span class="head">pips</span>${cells("band-spread")}`;
      grid.dataset.n = String(bands.length);
    }
    const put = (cls, i, text, thin) => {
      const cell = grid.querySelectorAll(`.${cls}`)[i];
      cell.textContent = text;
      cell.classList.toggle("thin", thin);
      cell.dataset.upTo = bands[i].up_to;
      if (thin) cell.title = "not quoted: the book is too thin for this size";
      else cell.removeAttribute("title");
    };
    bands.forEach((b, i) => {
      put("band-size", i, `≤ ${size(b.up_to)}`, false);
      put("band-bid", i, b.bid ?? "—", b.bid === null);
      put("band-ask", i, b.ask ?? "—", b.ask === null);
      const both = b.bid !== null && b.ask !== null;
      put("band-spread", i, both ? pips(measure(b.bid, b.ask, pip).tenths) : "—", !both);
    });
    el.dataset.ladderSeq = String(seqNo);
  }

  /** Ages and stale marks move with the clock, not only with prices. */
  tick() {
    const now = Date.now();
    for (const row of this.rows.values()) {
      if (!row.ts) continue;
      const age = now - row.ts;
      row.tr.querySelector(".age").textContent = (age / 1000).toFixed(1);
      row.tr.classList.toggle("stale", row.stale || age > STALE_AFTER_MS);
    }
  }

  renderCounters() {
    const st = this.socket.stats;
    this.counters.textContent = `${st.messages} prices · ${st.gaps} gaps · ${st.reconnects} reconnects`;
    const via = this.socket.transport === "sse" ? "SSE" : "WebSocket";
    this.transportLabel.textContent = this.rate ? `${via} · ≤ ${this.rate}/s per symbol` : via;
    this.transportLabel.dataset.transport = this.socket.transport;
  }
}

const root = document.getElementById("panels");
const notice = document.getElementById("notice");
try {
  const session = await demoSession();
  const names = session.channels.map((c) => c.name);
  const pick = (want, fallback) => (names.includes(want) ? want : fallback);
  const left = pick("vip", names[0]);
  const right = pick("retail", names.find((n) => n !== left) ?? left);
  const change = (panel, channel) => panel.open(channel);
  const panels = [new Panel(root, session, left, change), new Panel(root, session, right, change)];
  setInterval(() => panels.forEach((p) => p.tick()), 500);
  // For tests and the curious: the panels, their sockets and counters.
  window.pricefeedUi = { panels };
} catch (e) {
  notice.hidden = false;
  notice.textContent = `No demo tokens: ${e.message}. Start the edge with --demo (scripts/demo.sh does), or use /client.js with your own token.`;
}
