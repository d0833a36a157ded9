// The official socket.io-client against sioplay: one scenario, every observation printed as JSON.
// Usage: node interop.mjs PUBLIC_URL
// Every client dials the public port, as people do; the kernel picks the node.
import { io } from "socket.io-client";

const [publicUrl] = process.argv.slice(2);
const TIMEOUT_MS = 5000;
// Each try lands on the other node about half the time: 20 misses in a row are one chance in a million.
const MAX_TRIES = 20;

function client(query) {
  return io(publicUrl, { transports: ["websocket"], query, reconnection: false, forceNew: true });
}

function once(socket, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    socket.once(event, (data) => {
      clearTimeout(timer);
      resolve(data);
    });
  });
}

// Everything `socket` hears of `events` from now on, and a wait for an entry that has already arrived or will.
function recorder(socket, events) {
  const seen = [];
  const wakers = new Set();
  for (const event of events) {
    socket.on(event, (data) => {
      seen.push({ event, data });
      for (const wake of wakers) wake();
    });
  }
  function heard(event, predicate) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = seen.find((entry) => entry.event === event && predicate(entry.data));
        if (!found) return false;
        wakers.delete(check);
        clearTimeout(timer);
        resolve(found.data);
        return true;
      };
      const timer = setTimeout(() => {
        wakers.delete(check);
        reject(new Error(`no matching ${event} within ${TIMEOUT_MS} ms`));
      }, TIMEOUT_MS);
      if (!check()) wakers.add(check);
    });
  }
  return { heard };
}

async function refusal(query) {
  const socket = client(query);
  try {
    const error = await once(socket, "connect_error");
    return error.message;
  } finally {
    socket.close();
  }
}

const result = {};
const john = client({ id_user: "1", room: "Maths" });
const johnHeard = recorder(john, ["socket-connected", "socket-disconnected", "identity-change"]);
result.john_handshake = await once(john, "handshake");
result.john_id = john.id;

// Mary connects until she lands on a node other than John's; the sockets that landed on his leave again.
let mary = null;
result.discarded = [];
for (let attempt = 1; attempt <= MAX_TRIES && mary === null; attempt++) {
  const candidate = client({ id_user: "2", room: "Maths" });
  const handshake = await once(candidate, "handshake");
  if (handshake.node !== result.john_handshake.node) {
    mary = candidate;
    result.mary_handshake = handshake;
  } else {
    result.discarded.push({ id_socket: candidate.id, node: handshake.node });
    candidate.close();
  }
}
if (mary === null) {
  process.stderr.write(`every one of ${MAX_TRIES} connections landed on ${result.john_handshake.node}\n`);
  process.exit(1);
}
result.mary_id = mary.id;
result.john_saw_connect = await johnHeard.heard("socket-connected", (data) => data.id_socket === result.mary_id);
for (const { id_socket } of result.discarded) {
  await johnHeard.heard("socket-disconnected", (data) => data.id_socket === id_socket);
}

mary.emit("identity-change", { id_user: "7" });
result.john_saw_identity_change = await johnHeard.heard("identity-change", (data) => data.id_socket === result.mary_id);

const roster = await fetch(`${publicUrl}/Maths/users`);
result.roster_status = roster.status;
result.roster = await roster.json();

result.bad_user = await refusal({ id_user: "99", room: "Maths" });
result.missing_user = await refusal({ room: "Maths" });
result.bad_room = await refusal({ id_user: "1", room: "" });
result.long_room = await refusal({ id_user: "1", room: "x".repeat(65) });

mary.close();
result.john_saw_disconnect = await johnHeard.heard("socket-disconnected", (data) => data.id_socket === result.mary_id);

const after = await fetch(`${publicUrl}/Maths/users`);
result.roster_after = await after.json();
john.close();

process.stdout.write(JSON.stringify(result) + "\n");
process.exit(0);
