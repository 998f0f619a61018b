// rigwire control: the page. It shows what `rigwire control` pushes over
// one websocket (every rig's state, the live log) and sends it the actions
// a person takes. Nothing here waits on a rig: actions are sent, and their
// results arrive as updates, in every open tab alike.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const rigs = new Map(); // name -> card element
let socket = null;

// An experiment reference as the rigs check it: yyyy-mm-dd_n_subject.
function expRefProblem(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})_(\d+)_(.+)$/.exec(text);
  if (!m) return "expected yyyy-mm-dd_n_subject, such as 2026-11-26_1_mouse";
  const [, y, mo, d, n] = m.map(Number);
  const day = new Date(Date.UTC(y, mo - 1, d));
  if (day.getUTCFullYear() !== y || day.getUTCMonth() !== mo - 1 || day.getUTCDate() !== d) {
    return `${m[1]}-${m[2]}-${m[3]} is not a date`;
  }
  if (n < 1) return "the session number starts at 1";
  return null;
}

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(message));
    return true;
  }
  return false;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(token)}`);
  socket.onopen = () => setLink(true);
  socket.onclose = () => {
    setLink(false);
    setTimeout(connect, 1000);
  };
  socket.onmessage = (event) => receive(JSON.parse(event.data));
}

function setLink(up) {
  const link = document.getElementById("link");
  link.className = `link ${up ? "up" : "down"}`;
  link.textContent = up ? "live" : "reconnecting to rigwire control…";
}

function receive(message) {
  switch (message.type) {
    case "snapshot":
      document.getElementById("log").replaceChildren();
      message.log.forEach(addLog);
      message.rigs.forEach(showRig);
      break;
    case "rig":
      showRig(message.rig);
      break;
    case "log":
      addLog(message.entry);
      break;
    case "error":
      addLog({ t: Date.now() / 1000, kind: "error", rig: null, text: message.message });
      break;
  }
  summarize();
}

function card(name) {
  let el = rigs.get(name);
  if (el) return el;
  el = document.getElementById("rig-card").content.firstElementChild.cloneNode(true);
  el.dataset.rig = name;
  el.querySelector(".name").textContent = name;
  el.querySelector(".call").addEventListener("submit", (event) => {
    event.preventDefault();
    const method = el.querySelector(".method").value.trim();
    const text = el.querySelector(".args").value.trim() || "null";
    const error = el.querySelector(".call-error");
    let args;
    try {
      args = JSON.parse(text);
    } catch (e) {
      error.textContent = `the arguments are not JSON: ${e.message}`;
      return;
    }
    if (!method) {
      error.textContent = "which method?";
      return;
    }
    error.textContent = "";
    send({ op: "call", rig: name, method, args });
  });
  document.getElementById("rigs").appendChild(el);
  rigs.set(name, el);
  return el;
}

function showRig(rig) {
  const el = card(rig.name);
  el.className = `rig ${rig.state.replaceAll(" ", "-")}`;
  el.dataset.state = rig.state;
  el.dataset.status = rig.status || "";
  el.querySelector(".state").textContent = rig.state;
  el.querySelector(".url").textContent = rig.url;
  // Why a rig is disconnected, or connected but not answering its probes.
  el.querySelector(".reason").textContent = rig.reason || "";
  // A disconnected rig's lifecycle is what it was when last seen.
  const stale = rig.state !== "authenticated" && rig.status;
  const status = el.querySelector(".status");
  status.textContent = rig.status ? (stale ? `last seen ${rig.status}` : rig.status) : "—";
  status.className = `status ${stale ? "stale" : rig.status || ""}`;
  el.querySelector(".exp-ref").textContent = rig.exp_ref || "";
  const rtts = rig.rtt_ms || [];
  const last = rtts[rtts.length - 1];
  el.querySelector(".rtt").textContent = last === undefined ? "—" : `${last.toFixed(2)} ms`;
  el.querySelector(".spark polyline").setAttribute("points", sparkline(rtts));
  const offset = rig.offset_ms;
  el.querySelector(".offset").textContent =
    offset === null || offset === undefined ? "—"
      : Math.abs(offset) < 0.05 ? "0.0 ms" : `${offset > 0 ? "+" : ""}${offset.toFixed(1)} ms`;
  const lastBox = el.querySelector(".last");
  if (rig.last) {
    lastBox.textContent = `${rig.last.ok ? "✓" : "✗"} ${rig.last.what}: ${rig.last.text}`;
    lastBox.className = `last ${rig.last.ok ? "ok" : "bad"}`;
  }
  const methods = el.querySelector(".methods");
  methods.replaceChildren(...rig.methods.map((m) => Object.assign(document.createElement("li"), { textContent: m })));
  el.querySelector(".count").textContent = `(${rig.methods.length})`;
}

// The round trips as a polyline in a 120 × 28 box, scaled to their range.
function sparkline(values) {
  if (values.length < 2) return "";
  const max = Math.max(...values), min = Math.min(...values);
  const span = max - min || 1;
  return values
    .map((v, i) => `${(i * 120) / (values.length - 1)},${26 - ((v - min) / span) * 24}`)
    .join(" ");
}

function addLog(entry) {
  const li = document.createElement("li");
  li.className = entry.kind;
  const time = new Date(entry.t * 1000).toLocaleTimeString();
  li.append(
    Object.assign(document.createElement("span"), { className: "time", textContent: time }),
    Object.assign(document.createElement("span"), { className: "who", textContent: entry.rig || "all" }),
    document.createTextNode(entry.text),
  );
  const log = document.getElementById("log");
  log.prepend(li);
  while (log.children.length > 500) log.lastElementChild.remove();
}

function summarize() {
  const states = [...rigs.values()].map((el) => el.dataset.state);
  const up = states.filter((s) => s === "authenticated").length;
  const silent = states.filter((s) => s === "not answering").length;
  document.getElementById("summary").textContent =
    `${up} of ${states.length} rigs connected` + (silent ? `, ${silent} not answering` : "");
}

document.querySelectorAll("#steps button").forEach((button) => {
  button.addEventListener("click", () => {
    const step = button.dataset.step;
    const input = document.getElementById("exp-ref");
    const error = document.getElementById("step-error");
    const message = { op: "lifecycle", step };
    if (step === "start") {
      const problem = expRefProblem(input.value.trim());
      input.classList.toggle("invalid", problem !== null);
      if (problem) {
        error.textContent = `not started: ${problem}`;
        return;
      }
      message.exp_ref = input.value.trim();
    }
    error.textContent = "";
    input.classList.remove("invalid");
    if (!send(message)) error.textContent = "not connected to rigwire control";
  });
});

connect();
