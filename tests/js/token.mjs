// The official socket.io-client with a token in the `auth` payload, as socket.io's guide sends it.
// Usage: node token.mjs URL GOOD_TOKEN BAD_TOKEN; prints {handshake, refusal} as JSON.
import { io } from "socket.io-client";

const [url, goodToken, badToken] = process.argv.slice(2);
const TIMEOUT_MS = 5000;

function attempt(token) {
  return new Promise((resolve, reject) => {
    const socket = io(url, {
      transports: ["websocket"], query: { room: "Maths" }, auth: { token }, reconnection: false, forceNew: true,
    });
    const timer = setTimeout(() => reject(new Error(`no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    socket.once("handshake", (handshake) => {
      clearTimeout(timer);
      resolve({ handshake, id: socket.id });
      socket.close();
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      resolve({ refusal: err.message });
      socket.close();
    });
  });
}

const good = await attempt(goodToken);
const bad = await attempt(badToken);
console.log(JSON.stringify({ handshake: good.handshake, id: good.id, refusal: bad.refusal }));
