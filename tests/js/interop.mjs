// The official socket.io-client against sioplay: one scenario, every observation printed as JSON.
// Usage: node interop.mjs PUBLIC_URL OTHER_NODE_URL
import { io } from "socket.io-client";

const [publicUrl, otherUrl] = process.argv.slice(2);
const TIMEOUT_MS = 5000;

function client(url, query) {
  return io(url, { transports: ["websocket"], query, reconnection: false, forceNew: true });
}

function once(socket, event, predicate = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    const handler = (data) => {
      if (!predicate(data)) return;
      clearTimeout(timer);
      socket.off(event, handler);
      resolve(data);
    };
    socket.on(event, handler);
  });
}

async function refusal(query) {
  const socket = client(publicUrl, query);
  try {
    const error = await once(socket, "connect_error");
    return error.message;
  } finally {
    socket.close();
  }
}

const result = {};
const john = client(publicUrl, { id_user: "1", room: "Maths" });
result.john_handshake = await once(john, "handshake");
result.john_id = john.id;

const mary = client(otherUrl, { id_user: "2", room: "Maths" });
const maryJoined = once(john, "socket-connected");
result.mary_handshake = await once(mary, "handshake");
result.mary_id = mary.id;
result.john_saw_connect = await maryJoined;

const change = once(john, "identity-change");
mary.emit("identity-change", { id_user: "7" });
result.john_saw_identity_change = await change;

const roster = await fetch(`${publicUrl}/Maths/users`);
result.roster_status = roster.status;
result.roster = await roster.json();

result.bad_user = await refusal({ id_user: "99", room: "Maths" });
result.missing_user = await refusal({ room: "Maths" });
result.bad_room = await refusal({ id_user: "1", room: "" });
result.long_room = await refusal({ id_user: "1", room: "x".repeat(65) });

const left = once(john, "socket-disconnected");
mary.close();
result.john_saw_disconnect = await left;

const after = await fetch(`${otherUrl}/Maths/users`);
result.roster_after = await after.json();
john.close();

process.stdout.write(JSON.stringify(result) + "\n");
process.exit(0);
