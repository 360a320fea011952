// zero's status page: renders /status.json (embedded at load, then polled every second).
// Every value is inserted with textContent: tablet names and addresses are not trusted.
"use strict";
(function () {
  const POLL_MS = 1000;
  const TIMEOUT_MS = 2500;
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  const num = (n) => (n === null || n === undefined ? "-" : Number(n).toLocaleString("en-US"));
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0, v = Number(n) || 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(v < 10 ? 1 : 0) : String(v)) + " " + units[i];
  }
  const badge = (cls, text) => el("span", { class: "badge " + cls, text: text });
  const health = (h) => badge(h, h);
  function ago(ms, now) {
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 60) return s + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 86400) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }

  function renderSummary(r) {
    const me = r.self;
    $("self-id").textContent = me.raft_id;
    $("cluster-id").textContent = r.cluster.cluster_id || "(not set yet)";
    $("version").textContent = num(r.cluster.version);
    $("view-note").textContent = r.view === "leader"
      ? "this zero leads: peer and data-node health is first-hand"
      : "this zero follows: health of other followers and data nodes is known on the leader's page";
    $("leader-id").textContent = r.cluster.leader_id ? "zero " + r.cluster.leader_id : "none known";
    $("term").textContent = num(me.term);
    $("max-uid").textContent = num(r.cluster.max_uid);
    $("max-ts").textContent = num(r.cluster.max_txn_ts);
    $("rebalance").textContent = r.cluster.rebalance_enabled ? "on" : "off";
    document.title = "zero " + me.raft_id + (me.serving ? "" : " (not serving)");
  }

  function renderZeros(r) {
    const body = $("zeros").tBodies[0];
    const rows = r.zeros.map((z) => {
      const role = el("td", {}, z.leader ? badge("leader", "leader") : document.createTextNode(z.role.toLowerCase()));
      if (z.self) role.append(" ", el("span", { class: "note", text: "(this zero)" }));
      const h = el("td", {}, health(z.health));
      if (z.reason) h.append(" ", el("span", { class: "note", text: z.reason }));
      return el("tr", { "data-zero-id": z.id, "data-role": z.role, "data-health": z.health,
                        "data-leader": z.leader ? "true" : "false", class: z.leader ? "is-leader" : "" },
        el("td", { text: z.id }), el("td", { text: z.addr }), role,
        el("td", { text: num(z.term) }), el("td", { text: num(z.applied) }), el("td", { text: num(z.match) }), h);
    });
    body.replaceChildren(...rows);
  }

  // What the reader asked for: a page of groups, one group's tablets, a search. Sent
  // with every poll; the server keeps each answer small whatever the cluster's size.
  const view = { groups_offset: 0, groups_limit: 24, group: 0, tablet_offset: 0, tablet: "" };
  function query() {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(view)) if (v) q.set(k, String(v));
    const s = q.toString();
    return s ? "?" + s : "";
  }
  function go(change) {
    Object.assign(view, change);
    poll(true);
  }

  function tabletList(tablets, maxSize) {
    return el("ul", { class: "tablets" }, ...tablets.map((t) => {
      const pct = Math.max(0.5, (100 * t.size_bytes) / maxSize);
      const fill = el("div", { class: "fill" });
      fill.style.width = pct.toFixed(2) + "%";
      const cls = "tablet" + (t.read_only ? " read-only" : "") + (t.moving ? " moving" : "");
      return el("li", { class: cls, "data-tablet": t.name, "data-size": t.size_bytes, title: t.name },
        el("span", { class: "name", text: t.name }), el("div", { class: "bar" }, fill),
        el("span", { class: "size", text: bytes(t.size_bytes) + (t.moving ? " moving" : t.read_only ? " read-only" : "") }));
    }));
  }

  function groupCard(g, now, maxSize) {
    const members = el("ul", { class: "members" }, ...g.members.map((m) => el("li",
      { class: "member", "data-member-id": m.id, "data-health": m.health, "data-leader": m.leader ? "true" : "false" },
      el("strong", { text: "#" + m.id }), el("span", { class: "addr", text: m.addr }),
      m.leader ? badge("leader", "leader") : null, m.learner ? badge("phase", "learner") : null, health(m.health),
      ...Object.entries(m.labels || {}).map(([k, v]) => el("span", { class: "label", "data-label": k, text: k + "=" + v })),
      m.last_heartbeat_ms ? el("span", { class: "note", text: "heartbeat " + ago(m.last_heartbeat_ms, now) }) : null)));
    const hidden = g.tablet_count - g.tablets.length;
    const more = hidden > 0 && view.group !== g.id
      ? el("button", { class: "more", type: "button", "data-open-group": g.id,
                       text: "all " + num(g.tablet_count) + " tablets (" + num(hidden) + " smaller not shown)" }) : null;
    if (more) more.addEventListener("click", () => go({ group: g.id, tablet_offset: 0 }));
    return el("article", { class: "card group", "data-group-id": g.id },
      el("header", {}, el("h3", { text: "Group " + g.id }),
        el("span", { class: "meta", text: g.members.length + (g.members.length === 1 ? " member · " : " members · ") + num(g.tablet_count) + " tablets · " + bytes(g.size_bytes) })),
      members, g.tablets.length ? tabletList(g.tablets, maxSize) : el("p", { class: "empty", text: "no tablets" }), more);
  }

  function pager(offset, limit, total, what, move) {
    const prev = el("button", { type: "button", text: "◀ previous", disabled: offset <= 0 });
    const next = el("button", { type: "button", text: "next ▶", disabled: offset + limit >= total });
    prev.addEventListener("click", () => move(Math.max(0, offset - limit)));
    next.addEventListener("click", () => move(offset + limit));
    const shown = total ? num(offset + 1) + "–" + num(Math.min(total, offset + limit)) + " of " + num(total) : "none";
    return el("div", { class: "pager" }, prev, el("span", { class: "note", text: what + " " + shown }), next);
  }

  function renderGroups(r, now) {
    const t = r.totals;
    $("totals").textContent = num(t.groups) + " groups · " + num(t.members) + " members · " + num(t.tablets) +
      " tablets · " + bytes(t.size_bytes) + " (largest first)";
    const maxSize = Math.max(1, ...r.groups.flatMap((g) => g.tablets.map((x) => x.size_bytes)));
    const cards = r.groups.map((g) => groupCard(g, now, maxSize));
    $("groups").replaceChildren(...(cards.length ? cards : [el("p", { class: "empty", text: "No data nodes have connected yet." })]));
    const p = r.groups_page;
    $("groups-pager").replaceChildren(...(p.total > p.limit || p.offset
      ? [pager(p.offset, p.limit, p.total, "groups", (o) => go({ groups_offset: o }))] : []));
    const one = r.group;
    const detail = $("group-detail");
    detail.hidden = !view.group;
    if (view.group) {
      const close = el("button", { type: "button", text: "close" });
      close.addEventListener("click", () => go({ group: 0, tablet_offset: 0 }));
      if (!one) {
        detail.replaceChildren(el("p", { class: "empty", text: "Group " + view.group + " does not exist (any more)." }), close);
      } else {
        const maxOne = Math.max(1, ...one.tablets.map((x) => x.size_bytes));
        detail.replaceChildren(groupCard(one, now, maxOne),
          pager(one.tablet_offset, one.tablet_limit, one.tablet_count, "tablets", (o) => go({ tablet_offset: o })), close);
      }
    }
    const s = r.search;
    const results = $("search-results");
    if (!s) { results.replaceChildren(); return; }
    const rows = s.tablets.map((x) => el("li", { class: "match", "data-tablet": x.name, "data-group-id": x.group_id },
      el("span", { class: "name", text: x.name }), " group " + x.group_id + " · " + bytes(x.size_bytes)));
    results.replaceChildren(el("p", { class: "note", text: num(s.count) + (s.count === 1 ? " tablet contains " : " tablets contain ") +
      JSON.stringify(s.text) + (s.count > rows.length ? " (the first " + rows.length + " by name)" : "") }),
      el("ul", { class: "changes" }, ...rows));
  }

  function moveItem(m) {
    return el("li", { "data-move-id": m.move_id, "data-phase": m.phase },
      el("strong", { text: m.tablet }), " group " + m.src_group + " → " + m.dst_group + " ",
      badge("phase", m.phase.toLowerCase()),
      m.abort_reason ? el("span", { class: "note", text: " " + m.abort_reason }) : null);
  }

  function renderMoves(r) {
    const parts = [];
    const a = r.moves.active;
    parts.push(a ? el("div", { class: "card", id: "active-move" }, el("h3", { text: "In progress" }), el("ul", { class: "changes" }, moveItem(a)))
                 : el("p", { class: "empty", text: "No move in progress." }));
    if (r.moves.recent.length) {
      parts.push(el("details", {}, el("summary", { text: "Recent moves (" + r.moves.recent.length + ")" }),
        el("ul", { class: "changes" }, ...r.moves.recent.map(moveItem))));
    }
    $("moves").replaceChildren(...parts);
  }

  function renderOracle(r) {
    const o = r.oracle;
    $("oracle-section").hidden = !o;
    if (!o) return;
    const aborts = Object.entries(o.aborts).map(([k, v]) => k.toLowerCase().replace("_", " ") + " " + v).join(", ");
    const rows = [
      ["Serving", o.serving ? "yes (this zero leads)" : "no (the leader serves it)"],
      ["max_assigned", o.serving ? String(o.max_assigned) : "—"],
      ["safe_ts", String(o.safe_ts)],
      ["Commits", String(o.commits)],
      ["Aborts", aborts || "none"],
      ["Pending", String(o.pending)],
      ["Conflict keys", String(o.conflict_keys)],
      ["Decisions kept", String(o.decisions)],
    ];
    $("oracle").replaceChildren(...rows.map(([k, v]) => el("div", { class: "kv", "data-key": k },
      el("span", { class: "k", text: k }), el("span", { class: "v", text: v }))));
  }

  function renderLeaders(r, now) {
    const items = r.leader_changes.map((c) => el("li", { "data-term": c.term },
      (c.leader ? "zero " + c.leader : "no leader") + (c.term ? " in term " + c.term : " (term not known)") + " · " +
      new Date(c.time_ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") + " (" + ago(c.time_ms, now) + ")"));
    $("leader-changes").replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: "none yet" })]));
  }

  function render(r) {
    const now = Date.now();
    renderSummary(r);
    renderZeros(r);
    renderGroups(r, now);
    renderMoves(r);
    renderOracle(r);
    renderLeaders(r, now);
    const removed = r.removed || [];
    $("removed-section").hidden = removed.length === 0;
    $("removed").textContent = removed.map((m) => (m.group_id ? "member " : "zero ") + m.id + " (" + m.addr + ")").join(", ");
    document.body.dataset.generated = String(r.generated_ms);
  }

  function setLive(state, text) {
    $("live").dataset.state = state;
    $("live-text").textContent = text;
  }

  let lastOk = 0;
  let timerId = 0;
  let asked = 0;
  async function poll(now) {
    clearTimeout(timerId);
    const mine = ++asked;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const resp = await fetch("/status.json" + query(), { cache: "no-store", signal: ctl.signal });
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const r = await resp.json();
      if (mine !== asked) return;  // a newer request (the reader moved on) answers instead
      render(r);
      lastOk = Date.now();
      setLive("live", "live");
    } catch (e) {
      setLive("stale", lastOk ? "stale since " + new Date(lastOk).toLocaleTimeString() : "unreachable");
    } finally {
      clearTimeout(timer);
      if (mine === asked) timerId = setTimeout(poll, POLL_MS);
    }
  }

  const search = $("tablet-search");
  let typing = 0;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => go({ tablet: search.value.trim() }), 300);
  });

  try {
    render(JSON.parse($("initial").textContent));
    lastOk = Date.now();
    setLive("live", "live");
  } catch (e) {
    setLive("stale", "waiting for data");
  }
  timerId = setTimeout(poll, POLL_MS);
})();
