// The protocol playground at /docs: a raw WebSocket (no client library, so every frame is
// exactly what goes over the wire), a form per message type, a log of frames both ways, and a
// readable rendering of /openapi.json.

const $ = (id) => document.getElementById(id);
const MAX_LOG = 500;
let ws = null;

// ---- log ----------------------------------------------------------------------------------------

let logged = 0; // numbers the log's lines, oldest first

function log(dir, text) {
  const li = document.createElement("li");
  li.dataset.n = String(++logged);
  let type = "";
  try {
    type = JSON.parse(text).type ?? "";
  } catch {}
  li.className = `frame ${dir === "→" ? "out" : "in"} ${type}`;
  li.dataset.type = type;
  li.dataset.dir = dir === "→" ? "out" : "in";
  const t = new Date().toISOString().slice(11, 23);
  li.innerHTML = `<span class="t">${t}</span> <span class="dir">${dir}</span> <code></code>`;
  li.querySelector("code").textContent = text;
  if (type === "message" && $("hide-messages").checked) li.hidden = true;
  const ol = $("log");
  ol.prepend(li);
  while (ol.children.length > MAX_LOG) ol.lastChild.remove();
  $("log-count").textContent = `${ol.children.length} shown (newest first, at most ${MAX_LOG})`;
}

$("hide-messages").addEventListener("change", (e) => {
  for (const li of document.querySelectorAll("#log li[data-type=message]")) li.hidden = e.target.checked;
});
$("clear").addEventListener("click", () => {
  $("log").innerHTML = "";
  $("log-count").textContent = "";
});

// ---- connection ---------------------------------------------------------------------------------

function setState(state) {
  const s = $("conn-state");
  s.className = `state ${state === "open" ? "open" : state === "connecting" ? "connecting" : "closed"}`;
  s.textContent = state;
  $("connect").disabled = state !== "disconnected" && state !== "closed";
  $("disconnect").disabled = !$("connect").disabled;
}

$("endpoint").addEventListener("change", (e) => {
  $("path-topic-label").hidden = e.target.value === "/ws";
});

$("connect").addEventListener("click", () => {
  const base = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
  const ep = $("endpoint").value;
  const url = ep === "/ws" ? base + "/ws" : base + "/ws/sub/" + encodeURIComponent($("path-topic").value.trim());
  setState("connecting");
  log("·", `connecting to ${url}`);
  ws = new WebSocket(url);
  ws.onopen = () => {
    setState("open");
    log("·", "open: send setup first");
  };
  ws.onmessage = (ev) => log("←", String(ev.data));
  ws.onclose = (ev) => {
    setState("closed");
    log("·", `closed: ${ev.code} ${ev.reason || ""}`.trim());
    ws = null;
  };
});

$("disconnect").addEventListener("click", () => ws?.close(1000, "playground"));

function send(frame) {
  const text = typeof frame === "string" ? frame : JSON.stringify(frame);
  if (!ws || ws.readyState !== WebSocket.OPEN) {
    log("·", "not connected");
    return;
  }
  ws.send(text);
  log("→", text);
}

// ---- forms --------------------------------------------------------------------------------------

const list = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
const json = (s, what) => {
  try {
    return JSON.parse(s);
  } catch {
    throw new Error(`${what} is not JSON`);
  }
};

const builders = {
  setup: (f) => {
    const frame = { type: "setup", token: $("token").value.trim(), topics: list(f.topics.value) };
    if (f.resume.value.trim()) frame.resume = json(f.resume.value, "resume");
    return frame;
  },
  subscribe: (f) => {
    const frame = { type: "subscribe", topic: f.topic.value.trim() };
    if (f.symbols.value.trim()) frame.symbols = list(f.symbols.value);
    return frame;
  },
  unsubscribe: (f) => ({ type: "unsubscribe", topic: f.topic.value.trim() }),
  resume: (f) => ({ type: "resume", topic: f.topic.value.trim(), from: json(f.from.value || "{}", "from") }),
  publish: (f) => ({
    type: "publish",
    topic: f.topic.value.trim(),
    messageId: f.messageId.value.trim(),
    payload: json(f.payload.value, "payload"),
  }),
  ping: () => ({ type: "ping" }),
  raw: (f) => f.text.value,
};

for (const form of document.querySelectorAll("form[data-type]")) {
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    try {
      send(builders[form.dataset.type](form));
    } catch (err) {
      log("·", String(err.message || err));
    }
  });
}

// ---- demo tokens (demo mode only) ---------------------------------------------------------------

(async () => {
  const r = await fetch("/demo/session").catch(() => null);
  if (!r?.ok) return;
  const session = await r.json();
  const sel = $("demo-token");
  for (const c of session.channels) {
    const o = document.createElement("option");
    o.value = c.token;
    o.textContent = `demo token for ${c.name}`;
    sel.appendChild(o);
  }
  sel.hidden = false;
  sel.addEventListener("change", () => {
    if (sel.value) $("token").value = sel.value;
  });
})();

// ---- the HTTP API, from /openapi.json -----------------------------------------------------------

function schemaName(ref) {
  return ref?.split("/").pop() ?? "";
}

(async () => {
  const target = $("api-list");
  try {
    const spec = await (await fetch("/openapi.json")).json();
    target.innerHTML = "";
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = `${spec.info.title} ${spec.info.version} · OpenAPI ${spec.openapi}`;
    target.appendChild(p);
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const div = document.createElement("div");
        div.className = "op";
        div.dataset.path = path;
        const params = (op.parameters ?? []).map((x) => `${x.name} (${x.in})`).join(", ");
        const body = op.requestBody?.content?.["application/json"]?.schema?.$ref;
        const responses = Object.entries(op.responses ?? {})
          .map(([code, r]) => `<li><b>${code}</b> <span></span></li>`)
          .join("");
        div.innerHTML = `<h3><span class="method">${method.toUpperCase()}</span> <code>${path}</code> <span class="tag">${(op.tags ?? []).join(", ")}</span></h3>
          <p class="desc"></p>
          ${params ? `<p class="hint">parameters: ${params}</p>` : ""}
          ${body ? `<p class="hint">body: ${schemaName(body)}</p>` : ""}
          <ul>${responses}</ul>`;
        div.querySelector(".desc").textContent = op.description ?? op.summary ?? "";
        const spans = div.querySelectorAll("ul span");
        Object.values(op.responses ?? {}).forEach((r, i) => {
          const ref = r.content && Object.values(r.content)[0]?.schema?.$ref;
          spans[i].textContent = (r.description ?? "") + (ref ? ` → ${schemaName(ref)}` : "");
        });
        target.appendChild(div);
      }
    }
  } catch (e) {
    target.textContent = `could not read /openapi.json: ${e}`;
  }
})();
