// The plainest Node.js fan-out: a `ws` server where every text frame a publisher sends on /pub is
// sent to every subscriber (any other path) as is. No auth, no topics, no sequence numbers of its
// own, no history: the floor of what a JS broadcast costs. Prints "ready" once listening.
//   node ws-server.mjs <port>
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] || 8090);
const wss = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });
const subscribers = new Set();
wss.on("connection", (ws, req) => {
  if (req.url === "/pub") {
    ws.on("message", (data) => {
      for (const c of subscribers) c.send(data, { binary: false });
    });
    return;
  }
  subscribers.add(ws);
  ws.on("close", () => subscribers.delete(ws));
  ws.on("error", () => subscribers.delete(ws));
  ws.send('{"type":"subscribed"}');
});
wss.on("listening", () => console.log("ready"));
