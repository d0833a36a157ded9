// The page of /ui/{room}: a file of its own, as the page's Content-Security-Policy runs no inline script.
// The room and the id_user come from the page's data- attributes, escaped there by the node.
// A token (`--auth token` clusters) comes in the URL's fragment, `#token=…`, which no request line carries; the page
// sends it in the Socket.IO `auth` payload and in its PUT's Authorization header.
(() => {
  const room = document.body.dataset.room;
  const idUser = document.body.dataset.idUser;
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  const mintHint = " (a new one: sioplay token --user " + idUser + " --page " + room + ")";
  const $ = (id) => document.getElementById(id);
  const names = new Map();
  // The least time between two GET /users/{id} for one user's identity changes: a burst of them costs two.
  const REHYDRATE_GAP_MS = 200;
  const rehydrating = new Map();
  let refreshing = null;
  let again = false;
  let shown = null;

  function setState(kind, text) {
    const el = $("state");
    el.className = "state " + kind;
    el.textContent = text;
  }

  async function hydrate(id, force) {
    if (!force && names.has(id)) return names.get(id);
    const res = await fetch("/users/" + encodeURIComponent(id));
    const name = res.ok ? (await res.json()).name : "(unknown)";
    names.set(id, name);
    return name;
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  // An event that arrives while a refresh is in flight asks for one more, so no change is missed.
  function refresh() {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = (async () => {
      do {
        again = false;
        await loadRoster();
      } while (again);
    })().finally(() => { refreshing = null; });
    return refreshing;
  }

  async function loadRoster() {
    const res = await fetch("/rooms/" + encodeURIComponent(room));
    const roster = await res.json();
    if (!res.ok) throw new Error(roster.error || res.statusText);
    const members = roster.users.slice().sort((a, b) =>
      (Number(a.id_user) - Number(b.id_user)) || String(a.id_user).localeCompare(String(b.id_user)) ||
      a.id_socket.localeCompare(b.id_socket));
    await Promise.all(members.map((m) => hydrate(m.id_user, false)));
    shown = { members, headers: res.headers };
    render();
  }

  // The last roster, with the names known now: a new name needs no new roster.
  function render() {
    if (!shown) return;
    const { members, headers } = shown;
    const rows = members.map((m) => {
      const tr = document.createElement("tr");
      tr.dataset.idUser = m.id_user;
      if (m.id_socket === socket.id) tr.className = "self";
      tr.append(cell(m.id_user), cell(names.get(m.id_user) || ""), cell(m.id_socket, "mono"), cell(m.node || "–", "mono"));
      return tr;
    });
    $("members").replaceChildren(...rows);
    $("count").textContent = "(" + members.length + ")";
    showNote(members);
    showCompleteness(headers);
  }

  // The table alone says nothing while the first roster loads, nor when only this page is in the room.
  function showNote(members) {
    const others = members.filter((m) => m.id_socket !== socket.id).length;
    const note = $("roster-note");
    note.className = "note" + (others ? " hidden" : " empty");
    note.textContent = members.length ? "nobody here yet but you: open this page as another id_user to see them arrive"
      : "nobody here yet";
  }

  // One GET /users/{id} now, and one more after the burst if more changes came meanwhile: a client that
  // announces a change a thousand times costs every page in the room two requests, not a thousand.
  function rehydrate(id) {
    const pending = rehydrating.get(id);
    if (pending) {
      pending.again = true;
      return;
    }
    const state = { again: false };
    rehydrating.set(id, state);
    (async () => {
      do {
        state.again = false;
        await hydrate(id, true);
        if (id === idUser) showMe(false);
        render();
        await new Promise((resolve) => setTimeout(resolve, REHYDRATE_GAP_MS));
      } while (state.again);
    })().finally(() => rehydrating.delete(id));
  }

  // Whether every node answered comes from the roster headers, as for any client of the roster routes.
  function showCompleteness(headers) {
    const complete = headers.get("X-Sioplay-Complete");
    $("partial").classList.toggle("hidden", complete === "true");
    $("partial-badge").classList.toggle("hidden", complete === "true");
    if (complete === "true") return;
    if (complete === null) {
      $("partial").textContent = "Completeness unknown: the answer carried no roster headers.";
      return;
    }
    // The node writes the count (common/node_counts.py), so the page says it as `who` and the JSON do.
    const error = headers.get("X-Sioplay-Error");
    $("partial").textContent = "Partial list: " + headers.get("X-Sioplay-Nodes-Summary") +
      (error ? " (" + error + ")" : "") + ".";
  }

  async function showMe(force) {
    const name = await hydrate(idUser, force);
    $("my-name").textContent = name;
    if (document.activeElement !== $("name-input")) $("name-input").value = name;
  }

  function showRefusal(text) {
    $("refusal").textContent = text;
    $("refusal").classList.remove("hidden");
  }

  // What a refusal means for this page: the server says why; the page says what to do about a token.
  function explain(message) {
    if (message === "token required") {
      return "This cluster requires a token, and this page has none" + mintHint + ".";
    }
    if (message === "token expired") return "Connection refused: the token expired" + mintHint + ".";
    if (token && /token|signature/.test(message)) return "Connection refused: the token was refused: " + message + mintHint + ".";
    return "Connection refused: " + message;
  }

  const socket = io({ transports: ["websocket"], query: { id_user: idUser, room }, auth: token ? { token } : {} });

  socket.on("connect", () => { $("save").disabled = false; });
  socket.on("handshake", (hs) => {
    $("id-socket").textContent = hs.id_socket;
    $("node").textContent = hs.node + " (pid " + hs.procid + ")";
    setState("connected", "connected to node " + hs.node);
    showMe(false);
    refresh();
  });
  socket.on("connect_error", (err) => {
    if (socket.active) {
      setState("reconnecting", "reconnecting…");
    } else {
      setState("refused", "refused");
      showRefusal(explain(err.message));
      $("live").classList.add("hidden");
      $("my-name").textContent = "–";
    }
  });
  socket.on("disconnect", (reason) => {
    $("save").disabled = true;
    setState(socket.active ? "reconnecting" : "error", socket.active ? "reconnecting…" : "disconnected (" + reason + ")");
  });
  socket.on("token-expired", () => {
    showRefusal("The token expired: the node closed this page's connection" + mintHint + ".");
  });
  socket.on("socket-connected", () => refresh());
  socket.on("socket-disconnected", () => refresh());
  socket.on("identity-change", (msg) => rehydrate(msg.id_user));

  $("rename").addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = $("name-input").value.trim();
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const res = await fetch("/users/" + encodeURIComponent(idUser), {
      method: "PUT", headers, body: JSON.stringify({ name }),
    });
    if (res.status !== 204) {
      const body = await res.json().catch(() => ({ error: res.statusText }));
      showRefusal("Could not save the name: " + body.error + (res.status === 401 ? mintHint : ""));
      return;
    }
    $("refusal").classList.add("hidden");
    socket.emit("identity-change", { id_user: idUser });
    await showMe(true);
    render();
  });
})();
