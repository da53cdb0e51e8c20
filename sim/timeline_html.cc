// The timeline page. The data goes in as one JSON object; a small script draws the
// lanes as SVG for the time window in view, so zooming redraws instead of stretching.
#include <cstdint>
#include <string>

#include "core/text.h"
#include "sim/timeline.h"

namespace kvr::sim {

namespace {

const char* stateName(NodeLook::State s) {
  switch (s) {
    case NodeLook::Down: return "down";
    case NodeLook::Dead: return "dead";
    case NodeLook::Follower: return "follower";
    case NodeLook::PreCandidate: return "precandidate";
    case NodeLook::Candidate: return "candidate";
    case NodeLook::Leader: return "leader";
  }
  return "?";
}

void appendString(std::string& out, std::string_view s) {
  text::appendQuoted(out, s, text::Quote::Json);
}

// The operations a linearizability explanation names ("#76 c3 put(...)"): outlined.
std::vector<uint64_t> namedOps(const std::string& detail, size_t opCount) {
  std::vector<uint64_t> ids;
  for (size_t i = 0; i + 1 < detail.size(); ++i) {
    if (detail[i] != '#' || detail[i + 1] < '0' || detail[i + 1] > '9') continue;
    uint64_t id = 0;
    size_t j = i + 1;
    while (j < detail.size() && detail[j] >= '0' && detail[j] <= '9' && id < opCount) {
      id = id * 10 + static_cast<uint64_t>(detail[j] - '0');
      ++j;
    }
    if (id < opCount) ids.push_back(id);
    i = j - 1;
  }
  return ids;
}

// The key of a linearizability explanation: `key "k1" is not linearizable`.
std::string namedKey(const std::string& detail) {
  const std::string lead = "key \"";
  size_t at = detail.find(lead);
  if (at == std::string::npos) return "";
  size_t end = detail.find('"', at + lead.size());
  return end == std::string::npos ? ""
                                  : detail.substr(at + lead.size(), end - at - lead.size());
}

std::string dataJson(const Timeline& t, const History& h, const std::string& scenario) {
  std::string j = "{\"title\":";
  appendString(j, scenario);
  j += ",\"end\":" + std::to_string(t.endNs()) + ",\"nodes\":" + std::to_string(t.nodes());
  uint32_t clients = 0;
  for (const Operation& op : h.ops()) clients = std::max(clients, op.client);
  j += ",\"clients\":" + std::to_string(clients);
  j += ",\"truncated\":" + std::string(t.truncated() ? "true" : "false");
  j += ",\"spans\":[";
  bool first = true;
  for (const Timeline::Span& s : t.spans()) {
    j += first ? "[" : ",[";
    first = false;
    j += std::to_string(s.node) + "," + std::to_string(s.fromNs) + "," +
         std::to_string(s.toNs) + ",\"" + stateName(s.look.state) + "\"," +
         std::to_string(s.look.term) + "," + (s.look.paused ? "1" : "0") + "," +
         std::to_string(s.look.driftPermille) + "]";
  }
  j += "],\"cuts\":[";
  first = true;
  for (const Timeline::Cut& c : t.cuts()) {
    j += first ? "[" : ",[";
    first = false;
    j += std::to_string(c.fromNs) + "," + std::to_string(c.toNs) + ",";
    appendString(j, c.links);
    j += "]";
  }
  j += "],\"marks\":[";
  first = true;
  for (const Timeline::Mark& m : t.marks()) {
    j += first ? "[" : ",[";
    first = false;
    j += std::to_string(m.atNs) + ",";
    appendString(j, m.what);
    j += "]";
  }
  j += "],\"ops\":[";
  first = true;
  for (const Operation& op : h.ops()) {
    j += first ? "[" : ",[";
    first = false;
    int outcome = op.outcome == Outcome::Ok ? 0 : op.outcome == Outcome::Fail ? 1 : 2;
    j += std::to_string(op.client) + "," + std::to_string(op.invokeNs) + "," +
         (op.completeNs ? std::to_string(*op.completeNs) : std::string("-1")) + "," +
         std::to_string(outcome) + ",";
    appendString(j, describeOperation(op));
    j += ",";
    appendString(j, op.key);
    j += "]";
  }
  j += "],\"violation\":";
  if (!t.failed()) {
    j += "null";
  } else {
    j += "{\"at\":" + std::to_string(t.violationNs()) + ",\"property\":";
    appendString(j, t.property());
    j += ",\"detail\":";
    appendString(j, t.detail());
    j += ",\"key\":";
    appendString(j, namedKey(t.detail()));
    j += ",\"ops\":[";
    first = true;
    for (uint64_t id : namedOps(t.detail(), h.size())) {
      j += (first ? "" : ",") + std::to_string(id);
      first = false;
    }
    j += "]}";
  }
  j += "}";
  // Inside <script>: no "</" may close the element early ("<\/" is the same string).
  std::string safe;
  safe.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    safe += j[i];
    if (j[i] == '<' && i + 1 < j.size() && j[i + 1] == '/') safe += '\\';
  }
  return safe;
}

constexpr const char* kHead = R"HTML(<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>kvsim timeline</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:12px;color:#222}
h1{font-size:15px;margin:0 0 4px}
#bar button{margin-right:6px}
#plot{border:1px solid #ccc;user-select:none;cursor:grab;display:block}
#tip{position:fixed;pointer-events:none;background:#fffde7;border:1px solid #999;padding:3px 6px;
 font:12px monospace;white-space:pre;display:none;max-width:70ch}
pre{background:#f6f6f6;padding:6px;overflow:auto;max-height:22em}
.legend span{display:inline-block;width:12px;height:10px;margin:0 3px 0 10px;vertical-align:middle}
table{border-collapse:collapse;font:12px monospace}td{padding:1px 8px}tr.named{background:#ffcdd2}
</style></head><body>
<h1 id="title"></h1><div id="verdict"></div>
<div id="bar"><button id="reset">whole run</button><button id="focus">zoom to violation</button>
<span id="window"></span> · wheel zooms, drag pans, hover shows the event
<span class="legend"><span style="background:#43a047"></span>leader<span style="background:#ffb300"></span>candidate
<span style="background:#ffe082"></span>pre-candidate<span style="background:#cfd8dc"></span>follower
<span style="background:#ef9a9a"></span>down<span style="background:#7b1fa2"></span>paused
<span style="background:#66bb6a"></span>op ok<span style="background:#e57373"></span>op failed
<span style="background:#ffa726"></span>op unknown</span></div>
<svg id="plot" xmlns="http://www.w3.org/2000/svg"></svg><div id="tip"></div>
<div id="explain"></div>
<script>
const D = )HTML";

constexpr const char* kTail = R"HTML(;
const LANE = 18, LABEL = 64, TOP = 22, W = Math.max(900, window.innerWidth - 40);
const lanes = ['faults', 'network'];
for (let i = 1; i <= D.nodes; i++) lanes.push('n' + i);
for (let i = 1; i <= D.clients; i++) lanes.push('c' + i);
const H = TOP + lanes.length * LANE + 4;
const svg = document.getElementById('plot'), tip = document.getElementById('tip');
svg.setAttribute('width', W); svg.setAttribute('height', H);
const colors = {leader:'#43a047', candidate:'#ffb300', precandidate:'#ffe082', follower:'#cfd8dc',
  down:'#ef9a9a', dead:'#b71c1c'};
const named = new Set(D.violation ? D.violation.ops : []);
let t0 = 0, t1 = Math.max(D.end, 1);
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const sec = ns => (ns / 1e9).toFixed(6) + ' s';
const x = t => LABEL + (t - t0) / (t1 - t0) * (W - LABEL - 4);
const laneY = name => TOP + lanes.indexOf(name) * LANE;
function rect(lane, from, to, fill, tipText, extra) {
  if (to < t0 || from > t1) return '';
  const a = Math.max(x(from), LABEL), b = Math.min(x(to), W - 4);
  return '<rect x="' + a.toFixed(1) + '" y="' + (laneY(lane) + 2) + '" width="' +
    Math.max(b - a, 1).toFixed(1) + '" height="' + (LANE - 4) + '" fill="' + fill + '"' +
    (extra || '') + ' data-tip="' + esc(tipText) + '"/>';
}
function draw() {
  const out = [];
  // Ticks 1, 2 or 5 x 10^k ns apart, at most about ten in view.
  const raw = (t1 - t0) / 10, pow = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * pow).find(v => v >= raw);
  const digits = Math.max(0, -Math.floor(Math.log10(step / 1e9)));
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
    out.push('<line x1="' + x(t) + '" x2="' + x(t) + '" y1="' + (TOP - 4) + '" y2="' + H +
      '" stroke="#eee"/><text x="' + (x(t) + 2) + '" y="12" font-size="10">' +
      (t / 1e9).toFixed(digits) + ' s</text>');
  }
  const byLane = {};
  lanes.forEach(l => byLane[l] = []);
  for (const [n, from, to, st, term, paused, drift] of D.spans) {
    let t = 'n' + n + ' ' + st + (term ? ' term ' + term : '') + (paused ? ', paused' : '') +
      (drift != 1000 ? ', clock ' + (drift / 1000) + 'x' : '') + '\n' + sec(from) + ' .. ' + sec(to);
    byLane['n' + n].push(rect('n' + n, from, to, colors[st], t));
    if (paused) byLane['n' + n].push(rect('n' + n, from, to, '#7b1fa2', t, ' opacity="0.6"'));
    if (st == 'leader' && x(to) - x(from) > 24 && to >= t0 && from <= t1)
      byLane['n' + n].push('<text x="' + (Math.max(x(from), LABEL) + 2) + '" y="' +
        (laneY('n' + n) + 13) + '" font-size="10" fill="#fff" pointer-events="none">t' + term + '</text>');
  }
  for (const [from, to, links] of D.cuts)
    byLane.network.push(rect('network', from, to, '#90a4ae', 'links cut: ' + links + '\n' +
      sec(from) + ' .. ' + sec(to)));
  for (const [at, what] of D.marks)
    byLane.faults.push(rect('faults', at, at, '#d84315', what + ' at ' + sec(at)));
  D.ops.forEach(([c, from, to, outcome, desc], i) => {
    const end = to < 0 ? D.end : to;
    const fill = ['#66bb6a', '#e57373', '#ffa726'][outcome];
    byLane['c' + c].push(rect('c' + c, from, end, fill, '#' + i + ' ' + desc,
      named.has(i) ? ' stroke="#000" stroke-width="2"' : ''));
  });
  lanes.forEach(l => {
    out.push('<g class="lane" data-lane="' + l + '"><text x="2" y="' + (laneY(l) + 13) +
      '" font-size="11">' + l + '</text>' + byLane[l].join('') + '</g>');
  });
  if (D.violation) {
    const vx = x(D.violation.at);
    if (vx >= LABEL && vx <= W) out.push('<line id="violation" x1="' + vx + '" x2="' + vx +
      '" y1="' + (TOP - 6) + '" y2="' + H + '" stroke="#c62828" stroke-width="2"' +
      ' data-tip="' + esc('violation: ' + D.violation.property + ' at ' + sec(D.violation.at)) + '"/>');
  }
  svg.innerHTML = out.join('');
  document.getElementById('window').textContent = sec(t0) + ' .. ' + sec(t1);
}
function zoomTo(a, b) {
  const span = Math.max(b - a, 1000);
  t0 = Math.max(0, a); t1 = Math.min(Math.max(D.end, 1), t0 + span);
  draw();
}
svg.addEventListener('wheel', e => {
  e.preventDefault();
  const r = svg.getBoundingClientRect(), f = e.deltaY > 0 ? 1.25 : 0.8;
  const at = t0 + (e.clientX - r.left - LABEL) / (W - LABEL - 4) * (t1 - t0);
  zoomTo(at - (at - t0) * f, at + (t1 - at) * f);
});
let drag = null;
svg.addEventListener('mousedown', e => drag = {x: e.clientX, t0, t1});
window.addEventListener('mouseup', () => drag = null);
window.addEventListener('mousemove', e => {
  if (drag) {
    const dt = (e.clientX - drag.x) / (W - LABEL - 4) * (drag.t1 - drag.t0);
    zoomTo(drag.t0 - dt, drag.t1 - dt);
  }
  const tipText = e.target.getAttribute && e.target.getAttribute('data-tip');
  tip.style.display = tipText ? 'block' : 'none';
  if (tipText) {
    tip.textContent = tipText;
    tip.style.left = (e.clientX + 12) + 'px'; tip.style.top = (e.clientY + 12) + 'px';
  }
});
document.getElementById('reset').onclick = () => zoomTo(0, D.end);
function focusViolation() {
  if (!D.violation) return;
  // The named operations and the violation; or, with none named, the run up to it.
  let a = D.violation.at, b = D.violation.at;
  for (const i of D.violation.ops) {
    const op = D.ops[i];
    a = Math.min(a, op[1]); b = Math.max(b, op[2] < 0 ? D.violation.at : op[2]);
  }
  // Some context before: what led there is usually a partition or an election ago.
  a -= Math.max((b - a) * 0.3, 3e8);
  const pad = Math.max((b - a) * 0.05, 5e6);
  zoomTo(a - pad, b + pad);
}
document.getElementById('focus').onclick = focusViolation;
document.getElementById('title').textContent = D.title;
const verdict = document.getElementById('verdict');
if (D.violation) {
  verdict.innerHTML = '<b style="color:#c62828">VIOLATION ' + esc(D.violation.property) +
    '</b> at ' + sec(D.violation.at);
  let html = '<pre>' + esc(D.violation.detail) + '</pre>';
  if (D.violation.key) {
    html += '<p>Every operation on key ' + esc(D.violation.key) +
      ' (the ones the explanation names are marked):</p><table>';
    D.ops.forEach((op, i) => {
      if (op[5] != D.violation.key) return;
      html += '<tr' + (named.has(i) ? ' class="named"' : '') + '><td>#' + i + '</td><td>' +
        esc(op[4]) + '</td></tr>';
    });
    html += '</table>';
  }
  document.getElementById('explain').innerHTML = html;
} else {
  verdict.textContent = 'no violation' + (D.truncated ? ' (timeline truncated)' : '');
}
if (D.violation) focusViolation(); else draw();
</script></body></html>
)HTML";

}  // namespace

std::string renderTimelineHtml(const Timeline& timeline, const History& history,
                               const std::string& scenario) {
  return std::string(kHead) + dataJson(timeline, history, scenario) + kTail;
}

}  // namespace kvr::sim
