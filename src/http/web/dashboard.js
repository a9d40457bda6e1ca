// The ops dashboard at /dashboard: polls /metrics (Prometheus text) and /stats every 2 s and
// draws the last 5 minutes on canvases. No library: the parsing and the charts are below.
// It shows one process: behind a load balancer that sends two scrapes to two edges, rates are
// not computed across them (pricefeed_edge_info names the edge of each scrape).

const INTERVAL_MS = 2000;
const KEEP = 150; // points: 5 minutes
const $ = (id) => document.getElementById(id);

/** Prometheus text → Map(name → [{labels, value}]) */
function parse(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const kv of (m[3] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]] = kv[2];
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: Number(m[4]) });
  }
  return out;
}

const sum = (samples, filter = () => true) => (samples ?? []).filter((s) => filter(s.labels)).reduce((a, s) => a + s.value, 0);
const byLabel = (samples, label) => {
  const m = new Map();
  for (const s of samples ?? []) m.set(s.labels[label] ?? "", (m.get(s.labels[label] ?? "") ?? 0) + s.value);
  return m;
};

/** Quantile q of the samples added between two scrapes of a histogram, in ms (bucket bound). */
function quantile(prev, cur, name, q) {
  const buckets = (m) => {
    const b = new Map();
    for (const s of m.get(`${name}_bucket`) ?? []) b.set(s.labels.le, (b.get(s.labels.le) ?? 0) + s.value);
    return b;
  };
  const a = buckets(prev);
  const b = buckets(cur);
  const les = [...b.keys()].sort((x, y) => (x === "+Inf" ? 1 : y === "+Inf" ? -1 : Number(x) - Number(y)));
  const total = (b.get("+Inf") ?? 0) - (a.get("+Inf") ?? 0);
  if (total <= 0) return null;
  // Beyond the largest bucket the chart shows that bucket's bound (a clipped value).
  const finite = les.filter((le) => le !== "+Inf");
  for (const le of les) {
    if ((b.get(le) ?? 0) - (a.get(le) ?? 0) >= q * total) return Number(le === "+Inf" ? finite.at(-1) : le) * 1000;
  }
  return null;
}

// ---- charts -------------------------------------------------------------------------------------

const COLORS = ["#4aa3ff", "#2fbf71", "#e5a00d", "#e5484d", "#b07cff", "#3cc8c8", "#ff7ab6"];

class Chart {
  constructor(title, unit) {
    this.el = document.createElement("section");
    this.el.className = "panel chart";
    this.el.innerHTML = `<h2>${title} <span class="hint">${unit}</span></h2><canvas width="560" height="180"></canvas><div class="legend"></div>`;
    $("charts").appendChild(this.el);
    this.canvas = this.el.querySelector("canvas");
    this.series = new Map(); // name → [values]
    this.el.dataset.title = title;
  }

  push(values) {
    for (const [name, v] of Object.entries(values)) {
      if (!this.series.has(name)) this.series.set(name, []);
    }
    for (const [name, list] of this.series) {
      list.push(values[name] ?? null);
      if (list.length > KEEP) list.shift();
    }
    this.draw();
  }

  draw() {
    const c = this.canvas.getContext("2d");
    const { width: w, height: h } = this.canvas;
    c.clearRect(0, 0, w, h);
    const all = [...this.series.values()].flat().filter((v) => v !== null);
    const max = Math.max(1e-9, ...all) * 1.1;
    c.strokeStyle = "#243040";
    c.fillStyle = "#7d8b9c";
    c.font = "11px system-ui";
    for (let i = 0; i <= 4; i++) {
      const y = h - 16 - ((h - 24) * i) / 4;
      c.beginPath();
      c.moveTo(40, y);
      c.lineTo(w, y);
      c.stroke();
      c.fillText(fmt((max * i) / 4), 2, y + 4);
    }
    let k = 0;
    const legend = [];
    for (const [name, list] of this.series) {
      const color = COLORS[k++ % COLORS.length];
      c.strokeStyle = color;
      c.lineWidth = 1.5;
      c.beginPath();
      let started = false;
      list.forEach((v, i) => {
        if (v === null) return;
        const x = 40 + ((w - 44) * (i + KEEP - list.length)) / (KEEP - 1);
        const y = h - 16 - ((h - 24) * v) / max;
        if (started) c.lineTo(x, y);
        else c.moveTo(x, y);
        started = true;
      });
      c.stroke();
      const last = list.at(-1);
      legend.push(`<span style="color:${color}">■</span> ${name} <b data-series="${name}">${last === null ? "–" : fmt(last)}</b>`);
    }
    this.el.querySelector(".legend").innerHTML = legend.length ? legend.join(" &nbsp; ") : (this.emptyNote ?? "");
  }
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
  if (v >= 100) return v.toFixed(0);
  return v.toFixed(v >= 10 ? 1 : 2);
}

// ---- polling ------------------------------------------------------------------------------------

const charts = {
  connections: new Chart("Connections", "open WebSocket connections"),
  delivered: new Chart("Delivered", "prices/s per channel"),
  latency: new Chart("Latency", "ms: source → socket write (p50, p99), in the edge (p99)"),
  slow: new Chart("Slow clients", "conflations/s and slow-consumer closes/s"),
  lag: Object.assign(new Chart("Consumer lag", "records behind, transform"), {
    emptyNote: "none reported: an edge alone has no transform worker (the workers' lag is in Prometheus), and a worker reports it once it has read",
  }),
  records: new Chart("Pipeline", "records/s: raw in, channel out, dead-lettered"),
};
window.pricefeedDashboard = { charts, scrapes: 0 };

let prev = null;
let prevAt = 0;
let prevNode = null;

function tile(id, label, value) {
  let t = $(`tile-${id}`);
  if (!t) {
    t = document.createElement("div");
    t.className = "tile panel";
    t.id = `tile-${id}`;
    t.innerHTML = `<div class="hint">${label}</div><div class="v"></div>`;
    $("tiles").appendChild(t);
  }
  t.querySelector(".v").textContent = value;
}

async function scrape() {
  let cur;
  try {
    cur = parse(await (await fetch("/metrics", { cache: "no-store" })).text());
  } catch (e) {
    $("notice").hidden = false;
    $("notice").textContent = `cannot read /metrics: ${e}`;
    return;
  }
  $("notice").hidden = true;
  const stats = await fetch("/stats", { cache: "no-store" }).then((r) => (r.ok ? r.json() : null)).catch(() => null);
  const now = Date.now();
  if (stats) {
    tile("node", "edge node", stats.node);
    tile("subs", "subscriptions", String(stats.subscriptions));
    tile("ready", "ready", stats.ready ? "yes" : "no");
    for (const t of stats.topics) tile(`topic-${t.topic}`, `${t.topic} subscribers`, String(t.subscribers));
  }
  // Counters of another process cannot be subtracted from these.
  const node = cur.get("pricefeed_edge_info")?.[0]?.labels.node ?? null;
  if (node !== prevNode) prev = null;
  prevNode = node;
  window.pricefeedDashboard.node = node;
  charts.connections.push({ connections: sum(cur.get("pricefeed_edge_connections")) });
  const lag = byLabel(cur.get("pricefeed_consumer_lag_records"), "partition");
  charts.lag.push(Object.fromEntries([...lag].map(([p, v]) => [`partition ${p}`, v])));
  if (prev) {
    const dt = (now - prevAt) / 1000;
    const rate = (name, filter) => Math.max(0, (sum(cur.get(name), filter) - sum(prev.get(name), filter)) / dt);
    const perChannel = {};
    for (const ch of byLabel(cur.get("pricefeed_edge_delivered_total"), "channel").keys()) {
      perChannel[ch] = rate("pricefeed_edge_delivered_total", (l) => l.channel === ch);
    }
    charts.delivered.push(perChannel);
    charts.latency.push({
      p50: quantile(prev, cur, "pricefeed_edge_delivery_latency_seconds", 0.5),
      p99: quantile(prev, cur, "pricefeed_edge_delivery_latency_seconds", 0.99),
      "in edge p99": quantile(prev, cur, "pricefeed_edge_internal_latency_seconds", 0.99),
    });
    charts.slow.push({
      conflations: rate("pricefeed_edge_conflated_total"),
      "slow closes": rate("pricefeed_edge_slow_consumer_closes_total"),
    });
    charts.records.push({
      "raw in": rate("pricefeed_raw_records_total"),
      "channel out": rate("pricefeed_channel_records_total"),
      "dead-lettered": rate("pricefeed_dead_lettered_total"),
    });
  }
  prev = cur;
  prevAt = now;
  window.pricefeedDashboard.scrapes += 1;
}

await scrape();
setInterval(scrape, INTERVAL_MS);
