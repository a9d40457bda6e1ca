// The client library in Node (the same file the edge serves at /client.js), with the `ws`
// package as its WebSocket: byTopics on /ws and byUrl on /ws/sub/{topic} each take a snapshot and
// live prices, are cut off for 1.5 s while the feed runs, and resume with the missed prices
// replayed and no gap or duplicate by the library's own checks. Usage: PRICEFEED_URL=http://…
import { WebSocket } from "ws";
import { SubSocket } from "../../src/http/web/client.js";

const base = process.env.PRICEFEED_URL;
const wsBase = base.replace(/^http/, "ws");
const session = await (await fetch(`${base}/demo/session`)).json();
const token = (channel) => session.channels.find((c) => c.name === channel).token;

function check(ok, what) {
  if (!ok) throw new Error(what);
  console.log(`ok: ${what}`);
}

const until = (fn, ms, what) =>
  new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => (fn() ? resolve() : Date.now() - t0 > ms ? reject(new Error(`timed out: ${what}`)) : setTimeout(tick, 50));
    tick();
  });

for (const [how, make] of [
  ["byTopics /ws", () => SubSocket.byTopics(wsBase, ["vip"], { token: token("vip"), WebSocket })],
  ["byUrl /ws/sub/retail", () => SubSocket.byUrl(`${wsBase}/ws/sub/retail`, { token: () => token("retail"), WebSocket })],
]) {
  const s = make();
  const gaps = [];
  s.on("gap", (g) => gaps.push(g));
  await until(() => s.stats.snapshots >= 1 && s.stats.messages >= 50, 20_000, `${how}: snapshot and 50 prices`);
  check(s.state === "open", `${how}: open, ${s.stats.messages} prices after the snapshot`);
  // A channel can publish nothing for a while (a pause of a busy machine): a drop during which the channel published nothing
  // has nothing to replay, so drop again (up to 4 times); every resume is checked all the same.
  let replayed = 0;
  let drops = 0;
  while (replayed === 0 && drops < 4) {
    drops += 1;
    const before = { ...s.stats };
    s.interrupt(1500);
    await until(() => s.stats.resumed > before.resumed && s.state === "open", 20_000, `${how}: resumed (drop ${drops})`);
    await until(() => s.stats.messages > before.messages + 50, 30_000, `${how}: live again (drop ${drops})`);
    replayed = s.stats.replayed - before.replayed;
    check(s.stats.snapshots === before.snapshots, `${how}: no new snapshot on resume (drop ${drops})`);
  }
  check(replayed > 0, `${how}: ${replayed} missed prices replayed (drop ${drops})`);
  check(gaps.length === 0 && s.stats.gaps === 0 && s.stats.duplicates === 0, `${how}: no gap, no duplicate`);
  s.close();
}
