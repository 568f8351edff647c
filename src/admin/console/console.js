// hookgate's operator console: one page over the admin API (/api/v1). No framework, no
// build step. Everything the API returns is shown as text (never as HTML): event bodies
// come from outside and are hostile.
"use strict";

const T = {
  en: {
    events: "Events", dead: "Dead letters", deliveries: "Deliveries", timers: "Timers", tail: "Live",
    explain: "Explain", groups: "Groups", connections: "Connections", rules: "Rules", audit: "Audit",
    logout: "Sign out", signin: "Sign in", signin_help: "A user of [admin] users, or a token of [admin] tokens.",
    user: "User", password: "Password", token: "Token", or: "or", wrong: "Those credentials were refused.",
    receiver: "Receiver", kind: "Kind", text: "Body contains", since: "Since", until: "Until", filter: "Filter",
    id: "ID", received: "Received", vendor: "Vendor", dedupe: "Dedupe key", older: "Older →", newest: "Newest",
    none: "Nothing here.", searched: "Searched down to event", status: "Status", rule: "Rule", action: "Action",
    attempts: "Tries", due: "Due", key: "Key", error: "Last error", event: "Event", retry: "Retry",
    cancel: "Cancel", replay: "Replay through the rules now", replay_rule: "only rule", all_rules: "all rules",
    body: "Body (decrypted)", fields: "Fields", matched: "Rules that matched", timeline: "Deliveries",
    kept: "Kept", retry_all: "Retry every dead delivery shown", pending: "pending", dead_n: "dead",
    name: "Name", chat: "Chat id", created: "Created", state: "State", reconnects: "Reconnects",
    last_message: "Last message", line: "Line", schedule: "Schedule", actions: "Actions",
    when: "When", who: "Who", target: "Target", detail: "Detail", paste: "Paste a decrypted body",
    run_explain: "Which rules fire?", fires: "fires", not_fires: "does not fire", live_help: "Callbacks appear here as they are committed.",
    done: "Done", replayed: "Replay {n}: {d} deliveries stored, {u} left out (rule unfinished)",
    queued: "{n} queued", cancelled: "{n} cancelled", viewer: "viewer: reading only", connected: "connected",
    reload: "Reload config", duplicate: "duplicate", planned: "actions", run_now: "Run now",
  },
  zh: {
    events: "事件", dead: "死信", deliveries: "投递", timers: "定时", tail: "实时",
    explain: "规则试算", groups: "群", connections: "长连接", rules: "规则", audit: "审计",
    logout: "退出", signin: "登录", signin_help: "使用 [admin] users 中的用户，或 [admin] tokens 中的令牌。",
    user: "用户", password: "密码", token: "令牌", or: "或", wrong: "凭据被拒绝。",
    receiver: "接收器", kind: "类型", text: "正文包含", since: "起", until: "止", filter: "筛选",
    id: "ID", received: "接收时间", vendor: "平台", dedupe: "去重键", older: "更早 →", newest: "最新",
    none: "暂无数据。", searched: "已搜索到事件", status: "状态", rule: "规则", action: "动作",
    attempts: "次数", due: "到期", key: "键", error: "最近错误", event: "事件", retry: "重试",
    cancel: "取消", replay: "按当前规则重放", replay_rule: "仅规则", all_rules: "全部规则",
    body: "正文（已解密）", fields: "字段", matched: "命中的规则", timeline: "投递",
    kept: "保存结果", retry_all: "重试列出的全部死信", pending: "待处理", dead_n: "死信",
    name: "名称", chat: "会话 ID", created: "创建时间", state: "状态", reconnects: "重连",
    last_message: "最近消息", line: "行", schedule: "计划", actions: "动作",
    when: "时间", who: "操作人", target: "对象", detail: "详情", paste: "粘贴解密后的正文",
    run_explain: "会触发哪些规则？", fires: "触发", not_fires: "不触发", live_help: "回调提交后会实时出现在这里。",
    done: "完成", replayed: "第 {n} 次重放：新建 {d} 条投递，{u} 条因规则未完成而跳过",
    queued: "已排队 {n} 条", cancelled: "已取消 {n} 条", viewer: "只读用户", connected: "已连接",
    reload: "重新加载配置", duplicate: "重复", planned: "个动作", run_now: "立即执行",
  },
};

let lang = localStorage.getItem("hookgate.lang") || (navigator.language.startsWith("zh") ? "zh" : "en");
const t = (k, vars) => {
  let s = (T[lang] && T[lang][k]) || T.en[k] || k;
  for (const [n, v] of Object.entries(vars || {})) s = s.replace("{" + n + "}", v);
  return s;
};

// Elements: strings become text nodes, never markup.
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const when = (ms) => (ms ? new Date(ms).toLocaleString(lang === "zh" ? "zh-CN" : undefined) : "");
const chip = (s) => h("span", { class: "chip s-" + s }, s);

// --- the API: credentials from this tab's session, the CSRF header on every call ---
let auth = sessionStorage.getItem("hookgate.auth") || "";
let me = null;

class Unauthorized extends Error {}

async function api(method, path, body) {
  const headers = { "X-Hookgate-CSRF": "1" };
  if (auth) headers.Authorization = auth;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch("/api/v1" + path, {
    method, headers, credentials: "omit", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) throw new Unauthorized();
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || r.status + " " + r.statusText);
  return data;
}

function toast(msg, bad) {
  const el = $("toast");
  el.textContent = msg;
  el.style.background = bad ? "var(--bad)" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), 4000);
}

// A write, then the view again; errors shown, not thrown.
async function act(method, path, body, done) {
  try {
    const r = await api(method, path, body);
    toast(done(r));
    route();
  } catch (e) {
    if (e instanceof Unauthorized) return login();
    toast(e.message, true);
  }
}

const operator = () => me && me.role === "operator";

// --- views ---

function show(...nodes) {
  $("main").replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}

function params() {
  const q = location.hash.split("?")[1] || "";
  return new URLSearchParams(q);
}

function go(view, p) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(p || {})) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  location.hash = "#/" + view + (s ? "?" + s : "");
}

// A datetime-local value as Unix ms, or "".
const ms = (v) => (v ? String(new Date(v).getTime()) : "");
const local = (m) => {
  if (!m) return "";
  const d = new Date(Number(m));
  d.setMinutes(d.getMinutes() - d.getTimezoneOffset());
  return d.toISOString().slice(0, 16);
};

function filterForm(fields, p, view) {
  const inputs = {};
  const form = h("form", { class: "filters", onsubmit: (e) => {
    e.preventDefault();
    const out = {};
    for (const [k, el] of Object.entries(inputs)) out[k] = el.type === "datetime-local" ? ms(el.value) : el.value.trim();
    go(view, out);
  } });
  for (const [k, label, type] of fields) {
    const v = p.get(k) || "";
    const el = h("input", { name: k, type: type || "text", value: type === "datetime-local" ? local(v) : v });
    inputs[k] = el;
    form.append(h("label", {}, t(label), el));
  }
  form.append(h("button", { type: "submit", class: "primary" }, t("filter")));
  return form;
}

function pager(page, view, p) {
  const bar = h("div", { class: "pager" });
  if (p.get("before")) bar.append(h("button", { type: "button", onclick: () => { p.delete("before"); go(view, Object.fromEntries(p)); } }, t("newest")));
  if (page.next_before) bar.append(h("button", { type: "button", id: "older", onclick: () => { p.set("before", page.next_before); go(view, Object.fromEntries(p)); } }, t("older")));
  if (page.searched_down_to) bar.append(h("span", { class: "muted" }, t("searched") + " " + page.searched_down_to));
  return bar;
}

async function viewEvents() {
  const p = params();
  const page = await api("GET", "/events?" + p.toString());
  const rows = page.items.map((e) =>
    h("tr", { class: "click", "data-id": e.id, onclick: () => go("event/" + e.id) },
      h("td", {}, e.id), h("td", {}, when(e.received_at_ms)), h("td", {}, e.receiver), h("td", {}, e.vendor),
      h("td", {}, e.kind), h("td", { class: "mono" }, e.dedupe_key)));
  show(
    h("h2", {}, t("events")),
    filterForm([["receiver", "receiver"], ["kind", "kind"], ["text", "text"], ["since_ms", "since", "datetime-local"], ["until_ms", "until", "datetime-local"]], p, "events"),
    rows.length ? h("table", { id: "events" }, h("thead", {}, h("tr", {}, ["id", "received", "receiver", "vendor", "kind", "dedupe"].map((c) => h("th", {}, t(c))))), h("tbody", {}, rows)) : h("p", { class: "muted" }, t("none")),
    pager(page, "events", p),
  );
}

function pretty(raw) {
  try { return JSON.stringify(JSON.parse(raw), null, 2); } catch { return raw; }
}

function deliveryCard(d) {
  const buttons = [];
  if (operator() && (d.status === "dead" || d.status === "pending"))
    buttons.push(h("button", { type: "button", class: "retry", onclick: () => act("POST", `/deliveries/${d.id}/retry`, undefined, (r) => t("queued", { n: r.queued })) }, d.status === "pending" ? t("run_now") : t("retry")));
  if (operator() && (d.status === "pending" || d.status === "waiting"))
    buttons.push(h("button", { type: "button", class: "danger", onclick: () => act("POST", `/deliveries/${d.id}/cancel`, undefined, (r) => t("cancelled", { n: r.cancelled })) }, t("cancel")));
  const log = d.attempt_log.map((a) =>
    h("li", { class: "o-" + a.outcome }, `#${a.attempt} ${when(a.started_at_ms)} · ${a.duration_ms} ms · ${a.outcome}`, a.error ? h("div", { class: "error mono" }, a.error) : null));
  return h("div", { class: "delivery", "data-id": d.id, "data-status": d.status },
    h("header", {}, h("strong", {}, `${d.rule} #${d.action}`), h("span", { class: "chip" }, d.kind), chip(d.status),
      d.replay ? h("span", { class: "chip" }, "replay " + d.replay) : null,
      h("span", { class: "muted" }, `${t("attempts")}: ${d.attempts}`),
      d.status === "pending" ? h("span", { class: "muted" }, `${t("due")}: ${when(d.next_attempt_at_ms)}`) : null,
      d.key ? h("span", { class: "mono muted" }, `${t("key")}: ${d.key}`) : null, ...buttons),
    d.last_error && !d.attempt_log.length ? h("div", { class: "error mono" }, d.last_error) : null,
    log.length ? h("ol", { class: "timeline" }, log) : null,
    d.result !== null ? h("details", {}, h("summary", {}, t("kept")), h("pre", {}, JSON.stringify(d.result, null, 2))) : null);
}

async function viewEvent(id) {
  const [e, rules] = await Promise.all([api("GET", "/events/" + id), api("GET", "/rules")]);
  const ev = e.event;
  const replay = [];
  if (operator()) {
    const pick = h("select", { id: "replay-rule" }, h("option", { value: "" }, t("all_rules")), rules.map((r) => h("option", { value: r.name }, r.name)));
    replay.push(h("div", { class: "pager" },
      h("button", { type: "button", id: "replay", class: "primary", onclick: () =>
        act("POST", `/events/${id}/replay`, pick.value ? { rule: pick.value } : {}, (r) => t("replayed", { n: r.replay, d: r.deliveries, u: r.unfinished })) }, t("replay")),
      h("label", { class: "muted" }, t("replay_rule") + " ", pick)));
  }
  show(
    h("h2", {}, `${t("event")} ${ev.id}`),
    h("div", { class: "grid" },
      h("span", { class: "muted" }, t("received")), h("span", {}, when(ev.received_at_ms)),
      h("span", { class: "muted" }, t("receiver")), h("span", {}, `${ev.receiver} (${ev.vendor})`),
      h("span", { class: "muted" }, t("kind")), h("span", {}, ev.kind),
      h("span", { class: "muted" }, t("dedupe")), h("span", { class: "mono" }, ev.dedupe_key),
      h("span", { class: "muted" }, t("matched")), h("span", {}, e.rules.length ? e.rules.join(", ") : "—")),
    ...replay,
    h("h3", {}, t("timeline")),
    e.deliveries.length ? e.deliveries.map(deliveryCard) : h("p", { class: "muted" }, t("none")),
    h("h3", {}, t("body")), h("pre", { id: "raw" }, pretty(ev.raw)),
    h("details", {}, h("summary", {}, t("fields")), h("pre", {}, JSON.stringify(ev.fields, null, 2))),
  );
}

function deliveryTable(items) {
  return h("table", { id: "deliveries" },
    h("thead", {}, h("tr", {}, ["id", "event", "receiver", "rule", "action", "status", "attempts", "due", "key", "error", ""].map((c) => h("th", {}, c ? t(c) : "")))),
    h("tbody", {}, items.map((d) => h("tr", { "data-id": d.id },
      h("td", {}, d.id), h("td", {}, h("a", { href: "#/event/" + d.event_id }, d.event_id)), h("td", {}, d.receiver),
      h("td", {}, `${d.rule} #${d.action}`), h("td", {}, d.kind), h("td", {}, chip(d.status)), h("td", {}, d.attempts),
      h("td", {}, d.status === "pending" ? when(d.next_attempt_at_ms) : ""), h("td", { class: "mono" }, d.key || ""),
      h("td", { class: "error mono" }, (d.last_error || "").slice(0, 200)),
      h("td", {}, operator() && (d.status === "dead" || d.status === "pending") ? h("button", { type: "button", class: "retry", onclick: () => act("POST", `/deliveries/${d.id}/retry`, undefined, (r) => t("queued", { n: r.queued })) }, d.status === "pending" ? t("run_now") : t("retry")) : null,
        operator() && (d.status === "pending" || d.status === "waiting") ? h("button", { type: "button", class: "danger", onclick: () => act("POST", `/deliveries/${d.id}/cancel`, undefined, (r) => t("cancelled", { n: r.cancelled })) }, t("cancel")) : null)))));
}

async function viewDeliveries() {
  const p = params();
  const page = await api("GET", "/deliveries?" + p.toString());
  const extra = [];
  if (operator() && p.get("status") === "dead" && page.items.length)
    extra.push(h("button", { type: "button", id: "retry-all", class: "primary", onclick: () =>
      act("POST", "/deliveries/retry-dead", { rule: p.get("rule") || null, receiver: p.get("receiver") || null }, (r) => t("queued", { n: r.queued })) }, t("retry_all")));
  show(
    h("h2", {}, p.get("status") === "dead" ? t("dead") : t("deliveries")),
    filterForm([["status", "status"], ["rule", "rule"], ["receiver", "receiver"], ["key", "key"]], p, "deliveries"),
    ...extra,
    page.items.length ? deliveryTable(page.items) : h("p", { class: "muted" }, t("none")),
    pager(page, "deliveries", p),
  );
}

async function viewTimers() {
  const page = await api("GET", "/timers?limit=500");
  show(h("h2", {}, t("timers")), page.items.length ? deliveryTable(page.items) : h("p", { class: "muted" }, t("none")));
}

function simpleTable(id, cols, rows) {
  if (!rows.length) return h("p", { class: "muted" }, t("none"));
  return h("table", { id }, h("thead", {}, h("tr", {}, cols.map(([k]) => h("th", {}, t(k))))),
    h("tbody", {}, rows.map((r) => h("tr", {}, cols.map(([, f]) => h("td", {}, f(r)))))));
}

async function viewGroups() {
  const rows = await api("GET", "/groups");
  show(h("h2", {}, t("groups")), simpleTable("groups", [["key", (g) => g.key], ["name", (g) => g.name], ["chat", (g) => g.chat_id || "…"], ["connections", (g) => g.connection], ["created", (g) => when(g.created_at_ms)]], rows));
}

async function viewConnections() {
  const rows = await api("GET", "/connections");
  show(h("h2", {}, t("connections")), simpleTable("connections", [["receiver", (c) => c.receiver], ["state", (c) => chip(c.state)], ["reconnects", (c) => c.reconnects], ["last_message", (c) => when(c.last_message_ms)]], rows));
}

async function viewRules() {
  const rows = await api("GET", "/rules");
  const reload = operator() ? h("button", { type: "button", id: "reload", onclick: () => act("POST", "/reload", undefined, (r) => r.message || t("done")) }, t("reload")) : null;
  show(h("h2", {}, t("rules")), reload, simpleTable("rules", [["name", (r) => r.name], ["line", (r) => r.line], ["receiver", (r) => (r.receivers || ["*"]).join(", ")], ["schedule", (r) => r.schedule || ""], ["actions", (r) => r.actions.map((a) => a.kind + (a.as ? " → steps." + a.as : "")).join(", ")]], rows));
}

async function viewAudit() {
  const p = params();
  const page = await api("GET", "/audit?" + p.toString());
  show(h("h2", {}, t("audit")), simpleTable("audit", [["when", (a) => when(a.at_ms)], ["who", (a) => a.who], ["action", (a) => a.action], ["target", (a) => a.target], ["detail", (a) => a.detail || ""]], page.items), pager(page, "audit", p));
}

async function viewExplain() {
  const receivers = await api("GET", "/receivers");
  const pick = h("select", { id: "explain-receiver" }, receivers.map((r) => h("option", { value: r.name }, `${r.name} (${r.vendor})`)));
  const body = h("textarea", { id: "explain-body", spellcheck: "false", placeholder: "<xml>…</xml> / {…}" });
  const out = h("div", { id: "explain-out" });
  const run = async (e) => {
    e.preventDefault();
    try {
      const r = await api("POST", "/explain", { receiver: pick.value, body: body.value });
      out.replaceChildren(h("p", {}, `${r.receiver} · ${t("kind")}: ${r.kind} · ${t("dedupe")}: ${r.dedupe_key}`),
        ...r.rules.map((v) => h("div", { class: "delivery" },
          h("header", {}, h("strong", {}, v.rule), h("span", { class: "muted" }, `${t("line")} ${v.line}`),
            h("span", { class: v.fires ? "rule-fires" : "rule-not" }, v.fires ? t("fires") : `${t("not_fires")}: ${v.why_not}`)),
          v.actions.map((a) => h("div", {}, h("div", { class: "muted" }, `#${a.index} ${a.kind}${a.condition ? " if " + a.condition : ""}${a.keeps ? " → steps." + a.keeps : ""}`),
            h("pre", {}, a.rendered || a.error))))));
    } catch (err) {
      if (err instanceof Unauthorized) return login();
      out.replaceChildren(h("p", { class: "error" }, err.message));
    }
  };
  show(h("h2", {}, t("explain")), h("form", { onsubmit: run }, h("p", {}, h("label", {}, t("receiver") + " ", pick)),
    h("p", {}, h("label", {}, t("paste"), body)), h("button", { type: "submit", class: "primary", id: "explain-run" }, t("run_explain"))), out);
}

// The live tail: server-sent events read through fetch (EventSource cannot send credentials).
let tailing = null;
async function viewTail() {
  const body = h("tbody", {});
  show(h("h2", {}, t("tail")), h("p", { class: "muted", id: "tail-state" }, t("live_help")),
    h("table", { id: "tail" }, h("thead", {}, h("tr", {}, ["id", "received", "receiver", "kind", "dedupe", "actions"].map((c) => h("th", {}, t(c))))), body));
  const ctl = new AbortController();
  tailing = ctl;
  const headers = { "X-Hookgate-CSRF": "1" };
  if (auth) headers.Authorization = auth;
  const r = await fetch("/api/v1/tail", { headers, signal: ctl.signal, credentials: "omit" });
  if (r.status === 401) return login();
  $("tail-state").textContent = t("connected") + " · " + t("live_help");
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (!frame.startsWith("event: callback") || !data) continue;
        const e = JSON.parse(data);
        body.prepend(h("tr", { class: "click fresh", "data-id": e.id, onclick: () => go("event/" + e.id) },
          h("td", {}, e.id), h("td", {}, when(e.received_at_ms)), h("td", {}, e.receiver), h("td", {}, e.kind),
          h("td", { class: "mono" }, e.dedupe_key), h("td", {}, e.duplicate ? t("duplicate") : `${e.actions} ${t("planned")}`)));
        while (body.children.length > 200) body.lastChild.remove();
      }
    }
  } catch (err) {
    if (err.name !== "AbortError") toast(err.message, true);
  }
}

async function summary() {
  try {
    const s = await api("GET", "/summary");
    const dead = Object.values(s.dead_by_rule).reduce((a, b) => a + b, 0);
    $("summary").replaceChildren(`${s.pending} ${t("pending")} · `, h("a", { href: "#/deliveries?status=dead" }, `${dead} ${t("dead_n")}`));
  } catch { /* shown on the next view */ }
}

const views = {
  events: viewEvents, event: (id) => viewEvent(id), deliveries: viewDeliveries, timers: viewTimers, tail: viewTail,
  explain: viewExplain, groups: viewGroups, connections: viewConnections, rules: viewRules, audit: viewAudit,
};

async function route() {
  if (tailing) { tailing.abort(); tailing = null; }
  const path = (location.hash.slice(2) || "events").split("?")[0];
  const [name, arg] = path.split("/");
  for (const a of document.querySelectorAll("nav a")) {
    const target = a.getAttribute("href").slice(2);
    a.classList.toggle("on", target === location.hash.slice(2) || (target === name && !location.hash.includes("status=dead")));
  }
  const view = views[name] || viewEvents;
  try {
    if (!me) me = await api("GET", "/whoami");
    $("who").textContent = me.name + (me.role === "viewer" ? " · " + t("viewer") : "");
    $("logout").hidden = !auth;
    await view(arg);
    summary();
  } catch (e) {
    if (e instanceof Unauthorized) return login();
    show(h("p", { class: "error" }, e.message));
  }
}

function login() {
  me = null;
  const form = $("login-form").content.cloneNode(true).firstElementChild;
  show(form);
  translate();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const token = f.get("token").trim();
    auth = token ? "Bearer " + token : "Basic " + btoa(String.fromCharCode(...new TextEncoder().encode(f.get("user") + ":" + f.get("password"))));
    try {
      me = await api("GET", "/whoami");
      sessionStorage.setItem("hookgate.auth", auth);
      route();
    } catch {
      auth = "";
      $("login-error").textContent = t("wrong");
    }
  });
}

function translate() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("lang").textContent = lang === "zh" ? "EN" : "中";
}

function setTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}

document.addEventListener("DOMContentLoaded", () => {
  setTheme(localStorage.getItem("hookgate.theme"));
  translate();
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("hookgate.lang", lang);
    translate();
    route();
  });
  $("theme").addEventListener("click", () => {
    const dark = document.documentElement.dataset.theme === "dark" ||
      (!document.documentElement.dataset.theme && matchMedia("(prefers-color-scheme: dark)").matches);
    const next = dark ? "light" : "dark";
    localStorage.setItem("hookgate.theme", next);
    setTheme(next);
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem("hookgate.auth");
    auth = "";
    login();
  });
  window.addEventListener("hashchange", route);
  route();
});
