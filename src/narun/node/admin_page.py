"""The HTML of ``narun admin`` (one page; it polls ``/api/state`` and streams logs by SSE)."""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>narun admin</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 0; color: #1d2433; background: #f6f7f9; }
  header { display: flex; align-items: center; gap: 1em; padding: .7em 1.2em;
           background: #1d2433; color: #fff; }
  header h1 { font-size: 1.1em; margin: 0; }
  header .grow { flex: 1; }
  header input { font: inherit; padding: .2em .4em; width: 14em; }
  main { padding: 1em 1.2em; }
  h2 { font-size: 1em; margin: 1.2em 0 .4em; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid #e3e6eb; }
  th { background: #eef0f4; font-weight: 600; }
  .status { font-weight: 600; }
  .running { color: #137333; } .starting, .installing { color: #b06000; }
  .crashed, .oom, .failed { color: #c5221f; } .stopped, .stopping { color: #5f6368; }
  button { font: inherit; padding: .1em .6em; margin-right: .3em; cursor: pointer; }
  #logs { background: #10141c; color: #d7dde8; padding: .6em; height: 18em; overflow: auto;
          font: 12px ui-monospace, monospace; white-space: pre-wrap; margin: 0; }
  #message { color: #c5221f; margin-left: 1em; }
  .muted { color: #5f6368; }
</style>
</head>
<body>
<header>
  <h1>narun admin</h1>
  <span id="summary" class="muted"></span>
  <span class="grow"></span>
  <label>Admin token <input id="token" type="password" autocomplete="off"></label>
</header>
<main>
  <h2>Nodes</h2>
  <table id="nodes"><thead><tr><th>Node</th><th>Status</th><th>Last seen</th>
    <th>Instances</th><th>Platform</th><th>Labels</th></tr></thead><tbody></tbody></table>
  <h2>Instances <span id="message"></span></h2>
  <table id="instances"><thead><tr><th>App</th><th>Instance</th><th>Node</th><th>Version</th>
    <th>Status</th><th>PID</th><th>Restarts</th><th>Memory</th><th>Since</th><th></th>
    </tr></thead><tbody></tbody></table>
  <h2 id="logs-title">Logs <span class="muted">(choose an instance)</span></h2>
  <pre id="logs"></pre>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const token = $("token");
token.value = sessionStorage.getItem("narun-token") || "";
token.addEventListener("change", () => sessionStorage.setItem("narun-token", token.value));
let stream = null;

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function mib(bytes) {
  return bytes == null ? "-" : (bytes / 1048576).toFixed(1) + " MiB";
}
function ago(iso, now) {
  const s = Math.max(0, (Date.parse(now) - Date.parse(iso)) / 1000);
  return s < 90 ? s.toFixed(0) + "s ago" : (s / 60).toFixed(0) + "m ago";
}
async function refresh() {
  let state;
  try {
    state = await (await fetch("/api/state")).json();
  } catch (e) {
    $("summary").textContent = "cannot reach the admin server";
    return;
  }
  const nodes = $("nodes").tBodies[0];
  const rows = $("instances").tBodies[0];
  nodes.replaceChildren();
  rows.replaceChildren();
  let count = 0;
  for (const n of state.nodes) {
    const r = nodes.insertRow();
    cell(r, n.node_id);
    cell(r, n.status, "status " + n.status);
    cell(r, ago(n.last_seen, state.now));
    cell(r, String(n.managed_instances.length));
    cell(r, n.os + "/" + n.arch + " py" + n.python);
    cell(r, Object.entries(n.labels).map(([k, v]) => k + "=" + v).join(", ") || "-");
    for (const i of n.instances) {
      count++;
      const r = rows.insertRow();
      r.dataset.instance = i.instance_id;
      cell(r, i.app_name);
      cell(r, i.instance_id);
      cell(r, n.node_id);
      cell(r, i.version);
      cell(r, i.status, "status " + i.status).title = i.error || "";
      cell(r, i.pid == null ? "-" : String(i.pid));
      cell(r, String(i.restarts));
      cell(r, mib(i.memory_bytes));
      cell(r, ago(i.since, state.now));
      const actions = r.insertCell();
      const logs = document.createElement("button");
      logs.textContent = "Logs";
      logs.dataset.logs = i.instance_id;
      logs.onclick = () => follow(i.app_name, i.instance_id);
      actions.append(logs);
      for (const action of ["restart", "stop"]) {
        const b = document.createElement("button");
        b.textContent = action[0].toUpperCase() + action.slice(1);
        b.dataset[action] = i.instance_id;
        b.disabled = !state.can_control;
        b.onclick = () => control(n.node_id, i.instance_id, action);
        actions.append(b);
      }
    }
  }
  $("summary").textContent = state.nodes.length + " nodes, " + state.apps.length +
    " apps, " + count + " instances";
}
function follow(app, instance) {
  if (stream) stream.close();
  const out = $("logs");
  out.textContent = "";
  $("logs-title").textContent = "Logs of " + instance;
  stream = new EventSource("/api/logs?app=" + encodeURIComponent(app) +
                           "&instance=" + encodeURIComponent(instance));
  stream.onmessage = (e) => {
    const l = JSON.parse(e.data);
    const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    out.append(l.timestamp.slice(11, 23) + " " + (l.stream === "stderr" ? "! " : "  ") +
               l.message + "\\n");
    if (atEnd) out.scrollTop = out.scrollHeight;
  };
}
async function control(node, instance, action) {
  const r = await fetch("/api/control", {
    method: "POST",
    headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token.value},
    body: JSON.stringify({node: node, instance_id: instance, action: action}),
  });
  const answer = await r.json();
  $("message").textContent = r.ok ? answer.ok : (answer.error || "refused");
  refresh();
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
"""
