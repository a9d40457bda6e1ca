// Checks the docker/ files without a Docker engine: they parse, every pricefeed command, flag and
// PRICEFEED_* variable they use exists in the binary's --help, and the pieces agree with each
// other (topics with channels.toml, scrape targets and upstreams with the compose services, the
// Grafana queries with the metrics the code defines). Usage: node docker.mjs <pricefeed binary>.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { parse } from "yaml";

const bin = process.argv[2];
const root = new URL("../../", import.meta.url).pathname;
const read = (p) => readFileSync(root + p, "utf8");
const failures = [];
const check = (ok, what) => {
  if (ok) console.log(`ok: ${what}`);
  else failures.push(what);
};
const help = (args) => execFileSync(bin, [...args, "--help"]).toString();

const compose = parse(read("docker/compose.yml"), { merge: true }); // compose resolves <<: merge keys
const services = compose.services;
const wanted = ["kafka", "topics", "transform", "edge-1", "edge-2", "lb", "simulator", "prometheus", "grafana"];
check(wanted.every((s) => services[s]), `compose.yml has ${wanted.join(", ")}`);
check(services.kafka.image.startsWith("apache/kafka:") && services.kafka.environment.KAFKA_PROCESS_ROLES === "broker,controller", "Kafka is the official image in KRaft mode");
check(services.transform.deploy?.replicas >= 2, "two transform workers or more");
const published = Object.entries(services).flatMap(([name, s]) => (s.ports ?? []).map((p) => [name, String(p)]));
check(published.length > 0 && published.every(([, p]) => p.startsWith("127.0.0.1:")), `every published port is on the host's loopback (${published.map(([n, p]) => `${n} ${p}`).join(", ")})`);

// Every pricefeed service: its subcommand, flags and PRICEFEED_* variables exist.
const configEnv = new Set(["PRICEFEED_JWT_SECRET", "PRICEFEED_API_KEYS"]); // named by [auth] in channels.toml
for (const [name, svc] of Object.entries(services)) {
  if (svc.image !== "pricefeed:local") continue;
  const [sub, ...rest] = svc.command;
  const text = help([sub]);
  for (const flag of rest.filter((a) => a.startsWith("--"))) {
    check(text.includes(flag), `${name}: pricefeed ${sub} has ${flag}`);
  }
  for (const key of Object.keys(svc.environment ?? {})) {
    if (!key.startsWith("PRICEFEED_") || configEnv.has(key)) continue;
    check(text.includes(`env: ${key}`), `${name}: pricefeed ${sub} reads ${key}`);
  }
}

// The Dockerfile: non-root, multi-stage, its entrypoint and environment exist.
const dockerfile = read("docker/Dockerfile");
check((dockerfile.match(/^FROM /gm) ?? []).length >= 2, "Dockerfile is multi-stage");
check(/^USER (?!root)\S+/m.test(dockerfile), "Dockerfile runs as a non-root user");
check(/ENTRYPOINT \["pricefeed"\]/.test(dockerfile), "Dockerfile's entrypoint is pricefeed");
const cmd = JSON.parse(/^CMD (\[.*\])/m.exec(dockerfile)[1]);
let known = true;
try {
  help([cmd[0]]); // clap exits non-zero for an unknown subcommand
} catch {
  known = false;
}
check(known, `Dockerfile's CMD ${cmd[0]} is a pricefeed command`);
check(/CARGO_PROFILE_RELEASE_DEBUG=false/.test(dockerfile), "the image's binary carries no debug info");
for (const [, key] of dockerfile.matchAll(/(PRICEFEED_[A-Z_]+)=/g)) {
  check(help(["run"]).includes(`env: ${key}`), `Dockerfile's ${key} is read by pricefeed`);
}
const httpPort = /PRICEFEED_HTTP_ADDR=\S+:(\d+)/.exec(dockerfile)[1];

// Topics created up front = the topics channels.toml names.
const toml = read("channels.toml");
const kafka = (key) => new RegExp(`^${key}\\s*=\\s*"([^"]+)"`, "m").exec(toml)[1];
const channels = [...toml.matchAll(/^\[channels\.([\w-]+)\]/gm)].map((m) => m[1]);
const expected = [kafka("raw_topic"), kafka("dead_letter_topic"), ...channels.map((c) => kafka("channel_topic_prefix") + c)].sort();
const script = services.topics.command.join("\n");
const created = /for t in ([^;]+);/.exec(script)[1].trim().split(/\s+/).sort();
check(JSON.stringify(created) === JSON.stringify(expected), `topics created = channels.toml's topics (${expected.join(", ")})`);

// Prometheus scrapes services of the compose file on pricefeed's HTTP port.
const prom = parse(read("docker/prometheus.yml"));
for (const job of prom.scrape_configs) {
  const targets = [
    ...(job.static_configs ?? []).flatMap((s) => s.targets),
    ...(job.dns_sd_configs ?? []).flatMap((d) => d.names.map((n) => `${n}:${d.port}`)),
  ];
  for (const t of targets) {
    const [host, port] = t.split(":");
    check(services[host] && port === httpPort, `prometheus ${job.job_name}: ${t} is a service on the HTTP port`);
  }
}
check(services.prometheus.volumes.some((v) => v.startsWith("./prometheus.yml:")), "Prometheus mounts prometheus.yml");

// nginx balances over the edge services.
const nginx = read("docker/nginx.conf");
const upstreams = [...nginx.matchAll(/upstream (\S+) \{([^}]*)\}/g)];
check(upstreams.length === 2, `nginx has an upstream for WebSockets and one per client for /metrics and /stats`);
for (const [, name, body] of upstreams) {
  const servers = [...body.matchAll(/server (\S+):(\d+)/g)];
  check(servers.length === 2 && servers.every(([, h, p]) => services[h]?.command[0] === "edge" && p === httpPort), `nginx upstream ${name} balances over the two edges`);
}
check(/proxy_set_header Upgrade \$http_upgrade/.test(nginx), "nginx passes WebSocket upgrades");

// Grafana's queries use metrics the code defines.
const telemetry = read("src/telemetry.rs");
const defined = new Set([...telemetry.matchAll(/"(pricefeed_[a-z_]+)"/g)].map((m) => m[1]));
const dash = JSON.parse(read("docker/grafana/dashboards/pricefeed.json"));
const used = new Set(dash.panels.flatMap((p) => p.targets.flatMap((t) => [...t.expr.matchAll(/pricefeed_[a-z_]+/g)].map((m) => m[0].replace(/_bucket$/, "")))));
const unknown = [...used].filter((m) => !defined.has(m));
check(used.size >= 8 && unknown.length === 0, `Grafana queries ${used.size} metrics, all defined in src/telemetry.rs (unknown: ${unknown})`);
const ds = parse(read("docker/grafana/provisioning/datasources/prometheus.yml"));
check(dash.panels.every((p) => p.datasource.uid === ds.datasources[0].uid), "every panel uses the provisioned Prometheus datasource");

if (failures.length) {
  console.error(`FAILED:\n  ${failures.join("\n  ")}`);
  process.exit(1);
}
