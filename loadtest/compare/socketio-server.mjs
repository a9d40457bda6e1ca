// A minimal Socket.IO room broadcast, the seeds' stack (Web3 Socket Server): WebSocket transport
// only, every client but the publisher (query role=pub) joins the room "prices", and each
// `publish` event is emitted to the room as `price`. Prints "ready" once listening.
//   node socketio-server.mjs <port>
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] || 8091);
const http = createServer();
const io = new Server(http, { transports: ["websocket"], perMessageDeflate: false, serveClient: false });
io.on("connection", (socket) => {
  if (socket.handshake.query.role === "pub") {
    socket.on("publish", (msg) => io.to("prices").emit("price", msg));
    return;
  }
  socket.join("prices");
});
http.listen(port, "127.0.0.1", () => console.log("ready"));
