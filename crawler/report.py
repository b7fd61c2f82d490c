"""The compliance report: what a compliance person asks after a crawl, from the store.

Pages stored per host; refusals by reason and by host, with example URLs and
the rules that fired; refusals over time; notices in force; purges and their
receipts; the ledger's status. Printed as text, or written as one
self-contained HTML page (inline CSS, inline script, SVG charts drawn in the
page: no external resource, no network).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from crawler.compliance.ledger import verify
from crawler.compliance.store import Store, utcnow

EXAMPLES_PER_REASON = 3
TIME_BUCKETS = 20


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build(store: Store, crawl_id: str | None, unwritten: list[str] | None = None) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-ready data.

    ``unwritten`` are the files of batches the store refused (COMPLIANCE_DATA_DIR/unwritten/):
    a crawl with one, or one that finished with ``store_write_failed``, is a failure of the report.
    """
    crawl = store.crawl(crawl_id) if crawl_id else None
    failures = [f"{path}: batches the store did not take" for path in unwritten or [] if not crawl_id or crawl_id in path]
    if crawl is not None and crawl.get("finish_reason") == "store_write_failed":
        failures.insert(0, f"crawl {crawl_id} finished with store_write_failed: part of what it collected is not in the store")
    refusal_rows = store.refusals(crawl_id)
    by_reason = Counter(r["reason"] for r in refusal_rows)
    by_host = Counter(r["host"] for r in refusal_rows)
    examples: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in refusal_rows:
        if len(examples[row["reason"]]) < EXAMPLES_PER_REASON:
            examples[row["reason"]].append({k: str(row[k]) for k in ("url", "gate", "rule", "source", "detail")})
    timeline: list[dict[str, Any]] = []
    if refusal_rows:
        times = [_aware(r["at"]) for r in refusal_rows]
        start, end = min(times), max(times)
        width = max((end - start).total_seconds() / TIME_BUCKETS, 1.0)
        buckets: dict[int, Counter[str]] = defaultdict(Counter)
        for row, at in zip(refusal_rows, times):
            buckets[int((at - start).total_seconds() // width)][row["host"]] += 1
        for index in range(max(buckets) + 1):
            timeline.append({"start": (start.timestamp() + index * width), "seconds": width, "by_host": dict(buckets.get(index, {}))})
    notices = []
    for row in store.notice_rows():
        data = row.data
        scope = data.get("scope", {})
        notices.append({
            "id": row.id, "status": data.get("status"), "type": data.get("type"), "tags": data.get("tags", []),
            "sender": data.get("sender_name"), "received": data.get("date_received"),
            "effective_at": data.get("effective_at"),
            "scope": ", ".join([*(["platform " + scope["platform"]] if scope.get("platform") else []),
                                *scope.get("domains", []), *scope.get("url_patterns", [])]),
        })  # fmt: skip
    purges = [p["receipt"] or {"purge_id": p["id"], "status": p["status"], "notice_id": p["notice_id"]} for p in store.purges()]
    verdict = verify(store.ledger_entries(), store.ledger_head())
    stored = store.items_per_host(crawl_id)
    return {
        "generated_at": utcnow().isoformat(timespec="seconds"),
        "store": store.url.split("@")[-1],
        "crawl": crawl,
        "stored_per_host": stored,
        "stored_total": sum(n for _, n in stored),
        "refusals_total": len(refusal_rows),
        "refusals_by_reason": by_reason.most_common(),
        "refusals_by_host": by_host.most_common(),
        "examples": dict(examples),
        "timeline": timeline,
        "notices": notices,
        "purges": purges,
        "ledger": {"ok": verdict.ok, "entries": verdict.entries, "message": verdict.message, "bad_entry": verdict.bad_seq},
        "store_failures": failures,
    }


def render_text(data: dict[str, Any]) -> str:
    lines = []
    crawl = data["crawl"]
    if crawl:
        lines.append(f"Crawl {crawl['id']} ({crawl['spider']}), {crawl['started_at']} to {crawl['finished_at']}, "
                     f"finished: {crawl['finish_reason']}")  # fmt: skip
    else:
        lines.append(f"All crawls in {data['store']}")
    lines.append(f"\nStored: {data['stored_total']} item(s)")
    for failure in data.get("store_failures") or []:
        lines.append(f"  FAILED: {failure}")
    lines += [f"  {host:<32} {n:>7}" for host, n in data["stored_per_host"]]
    lines.append(f"\nRefused: {data['refusals_total']} request(s), by reason")
    for reason, n in data["refusals_by_reason"]:
        lines.append(f"  {reason:<40} {n:>7}")
        for example in data["examples"].get(reason, []):
            lines.append(f"      e.g. {example['url']} at {example['gate']}: {example['rule']} ({example['source']})")
    lines.append("\nRefused, by host")
    lines += [f"  {host:<32} {n:>7}" for host, n in data["refusals_by_host"]]
    lines.append(f"\nNotices: {len(data['notices'])}")
    lines += [f"  {n['id']:<32} {n['status']:<10} {n['type']:<8} from {n['sender']}, received {n['received']}: {n['scope']}"
              for n in data["notices"]]  # fmt: skip
    lines.append(f"\nPurges: {len(data['purges'])}")
    for receipt in data["purges"]:
        counts = ", ".join(f"{k} {v}" for k, v in (receipt.get("counts") or {}).items()) or "-"
        manual = len(receipt.get("manual_action_required") or [])
        lines.append(f"  {receipt.get('purge_id')} {receipt.get('notice_id') or receipt.get('reason', '')}: {counts}"
                     + (f"; {manual} location(s) need manual action" if manual else ""))  # fmt: skip
    ledger = data["ledger"]
    lines.append(f"\nLedger: {ledger['message']}" if ledger["ok"] else f"\nLedger: BROKEN: {ledger['message']}")
    return "\n".join(lines) + "\n"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Compliance report</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border-bottom:1px solid #eee;padding:.25rem .5rem;text-align:left;vertical-align:top}
td{white-space:pre-line}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.ok{color:#16713a}.bad{color:#b00020;font-weight:bold}
.muted{color:#666;font-size:.9em}svg text{font:12px system-ui,sans-serif}
</style></head><body>
<h1>Compliance report</h1>
<p class="muted" id="meta"></p>
<div id="summary"></div>
<h2>Pages stored per host</h2><div id="stored"></div>
<h2>Refusals by reason</h2><div id="chart-reason"></div><div id="reasons"></div>
<h2>Refusals by host</h2><div id="chart-host"></div>
<h2>Refusals over time, by host</h2><div id="chart-time"></div>
<h2>Notices</h2><div id="notices"></div>
<h2>Purges and receipts</h2><div id="purges"></div>
<h2>Ledger</h2><div id="ledger"></div>
<script type="application/json" id="report-data">__DATA__</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("report-data").textContent);
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const palette = ["#3366cc","#dc3912","#ff9900","#109618","#990099","#0099c6","#dd4477","#66aa00","#b82e2e","#316395"];
function table(head, rows, numeric) {
  if (!rows.length) return '<p class="muted">none</p>';
  return "<table><tr>" + head.map((h, i) => `<th${numeric.includes(i) ? ' class="n"' : ""}>${esc(h)}</th>`).join("") + "</tr>" +
    rows.map(r => "<tr>" + r.map((c, i) => `<td${numeric.includes(i) ? ' class="n"' : ""}>${esc(c)}</td>`).join("") + "</tr>").join("") + "</table>";
}
function bars(pairs, id) {
  if (!pairs.length) return '<p class="muted">none</p>';
  const max = Math.max(...pairs.map(p => p[1])), row = 22, labelW = 260, barW = 420;
  let svg = `<svg role="img" aria-label="${id}" width="${labelW + barW + 70}" height="${pairs.length * row + 4}">`;
  pairs.forEach(([label, n], i) => {
    const w = Math.max(1, Math.round(barW * n / max)), y = i * row + 2;
    svg += `<text x="${labelW - 6}" y="${y + 15}" text-anchor="end">${esc(label)}</text>` +
      `<rect x="${labelW}" y="${y}" width="${w}" height="${row - 6}" fill="${palette[i % palette.length]}"><title>${esc(label)}: ${n}</title></rect>` +
      `<text class="value" x="${labelW + w + 6}" y="${y + 15}">${n}</text>`;
  });
  return svg + "</svg>";
}
function timeline(buckets) {
  if (!buckets.length) return '<p class="muted">none</p>';
  const hosts = [...new Set(buckets.flatMap(b => Object.keys(b.by_host)))];
  const totals = buckets.map(b => Object.values(b.by_host).reduce((a, c) => a + c, 0));
  const max = Math.max(...totals), h = 180, w = 24, gap = 6, left = 40;
  let svg = `<svg role="img" aria-label="refusals over time" width="${left + buckets.length * (w + gap) + 10}" height="${h + 40}">`;
  buckets.forEach((b, i) => {
    let y = h;
    hosts.forEach((host, k) => {
      const n = b.by_host[host] || 0;
      if (!n) return;
      const bh = Math.max(1, Math.round(h * n / max));
      y -= bh;
      svg += `<rect x="${left + i * (w + gap)}" y="${y}" width="${w}" height="${bh}" fill="${palette[k % palette.length]}"><title>${esc(host)}: ${n}</title></rect>`;
    });
    svg += `<text x="${left + i * (w + gap) + w / 2}" y="${h + 14}" text-anchor="middle">${totals[i]}</text>`;
  });
  svg += `<text x="0" y="12">${max}</text><text x="0" y="${h}">0</text></svg>`;
  const legend = hosts.map((host, k) => `<span style="color:${palette[k % palette.length]}">&#9632;</span> ${esc(host)}`).join(" &nbsp; ");
  const first = new Date(buckets[0].start * 1000).toISOString();
  return svg + `<p class="muted">${legend}<br>from ${esc(first)}, ${buckets[0].seconds.toFixed(1)} s per bar</p>`;
}
const crawl = data.crawl;
document.getElementById("meta").textContent = (crawl ? `Crawl ${crawl.id} (${crawl.spider}), ${crawl.started_at} to ${crawl.finished_at}, ${crawl.finish_reason}` : "All crawls") + ` · store ${data.store} · generated ${data.generated_at}`;
document.getElementById("summary").innerHTML = table(["", ""], [["pages stored", data.stored_total], ["requests refused", data.refusals_total], ["notices", data.notices.length], ["purges", data.purges.length]], [1]);
document.getElementById("stored").innerHTML = table(["host", "items"], data.stored_per_host, [1]);
document.getElementById("chart-reason").innerHTML = bars(data.refusals_by_reason, "refusals by reason");
document.getElementById("reasons").innerHTML = table(["reason", "count", "examples (URL, gate, rule, source)"],
  data.refusals_by_reason.map(([reason, n]) => [reason, n, (data.examples[reason] || []).map(e => `${e.url} at ${e.gate}: ${e.rule} (${e.source})`).join("\\n")]), [1]);
document.getElementById("chart-host").innerHTML = bars(data.refusals_by_host, "refusals by host");
document.getElementById("chart-time").innerHTML = timeline(data.timeline);
document.getElementById("notices").innerHTML = table(["id", "status", "type", "sender", "received", "scope"],
  data.notices.map(n => [n.id, n.status, n.tags.includes("cease-and-desist") ? "cease-and-desist" : n.type, n.sender, n.received, n.scope]), []);
document.getElementById("purges").innerHTML = table(["purge", "notice or reason", "operator", "finished", "deleted per location", "manual action"],
  data.purges.map(p => [p.purge_id, p.notice_id || p.reason || "", p.operator || "", p.finished_at || p.status || "",
    Object.entries(p.counts || {}).map(([k, v]) => `${k}: ${v}`).join("; "), (p.manual_action_required || []).map(m => m.location).join("; ")]), []);
document.getElementById("ledger").innerHTML = data.ledger.ok
  ? `<p class="ok" id="ledger-status">intact: ${data.ledger.entries} entries</p>`
  : `<p class="bad" id="ledger-status">BROKEN at entry ${data.ledger.bad_entry}: ${esc(data.ledger.message)}</p>`;
document.body.dataset.rendered = "yes";
</script></body></html>
"""


def render_html(data: dict[str, Any]) -> str:
    # Inside <script>, only "</" could end the element early: escape it.
    payload = json.dumps(data, default=str, ensure_ascii=False).replace("</", "<\\/")
    return _PAGE.replace("__DATA__", payload)

