/* traction.js: Traction's browser snippet, dependency-free.
 *
 *   <script src="https://YOUR-TRACTION/traction.js"></script>
 *   <script>traction.init("tr_pub_...", {host: "https://YOUR-TRACTION"});</script>
 *
 * track(event, properties), identify(userId, traits), page() (automatic on init, with the
 * UTM parameters), flush(); and the person's in-app content from journeys: banners, modals,
 * tooltips, onboarding checklists, product tours. It records $message_shown,
 * $message_clicked, $message_dismissed, $checklist_step_completed, $checklist_completed and
 * $tour_step_viewed. With a client key it also reads flags (remote evaluation: the rules
 * never reach the browser): flag(key, fallback), onFlags(callback), setAttributes(attrs);
 * reading a flag that put the person in an experiment records $experiment_viewed once.
 * Nothing here may break the host page: every network or rendering error is swallowed (and
 * kept in traction.errors for debugging).
 */
(function (window, document) {
  "use strict";
  if (window.traction && window.traction.__loaded) return;
  var cfg = { host: "", writeKey: "", poll: 30000, flushMs: 1000 };
  var queue = [];
  var timer = null;
  var shown = {};
  var store = safeStorage();
  var t = { __loaded: true, errors: [] };

  function safeStorage() {
    try { window.localStorage.setItem("__tr", "1"); return window.localStorage; } catch (e) { return null; }
  }
  function get(k) { try { return store ? store.getItem("traction:" + k) : null; } catch (e) { return null; } }
  function set(k, v) { try { if (store) store.setItem("traction:" + k, v); } catch (e) { /* private mode */ } }
  function uuid() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
      var r = Math.random() * 16 | 0; return (c === "x" ? r : (r & 3 | 8)).toString(16);
    });
  }
  function fail(e) { t.errors.push(String(e && e.message || e)); }
  function anonymousId() {
    var id = get("anonymousId");
    if (!id) { id = uuid(); set("anonymousId", id); }
    return id;
  }
  function who() {
    var w = { anonymousId: anonymousId() };
    var u = get("userId");
    if (u) w.userId = u;
    return w;
  }
  function auth() { return "Basic " + btoa(cfg.writeKey + ":"); }
  function request(method, path, body) {
    try {
      return window.fetch(cfg.host + path, {
        method: method, keepalive: method === "POST",
        headers: body ? { "Content-Type": "application/json", "Authorization": auth() } : { "Authorization": auth() },
        body: body ? JSON.stringify(body) : undefined
      }).then(function (r) { return r.ok ? r.json() : null; }, function (e) { fail(e); return null; });
    } catch (e) { fail(e); return Promise.resolve(null); }
  }
  function enqueue(message) {
    var w = who();
    message.messageId = uuid();
    message.timestamp = new Date().toISOString();
    message.anonymousId = w.anonymousId;
    if (w.userId) message.userId = w.userId;
    message.context = { library: { name: "traction.js", version: "1" }, page: { path: location.pathname, url: location.href, title: document.title } };
    queue.push(message);
    if (!timer) timer = setTimeout(t.flush, cfg.flushMs);
  }

  t.init = function (writeKey, options) {
    try {
      cfg.writeKey = writeKey;
      options = options || {};
      cfg.host = (options.host || "").replace(/\/$/, "");
      if (options.poll !== undefined) cfg.poll = options.poll;
      if (options.flushMs !== undefined) cfg.flushMs = options.flushMs;
      cfg.clientKey = options.clientKey || "";
      if (options.attributes) for (var a in options.attributes) attributes[a] = options.attributes[a];
      if (options.page !== false) t.page();
      t.loadFlags();
      window.addEventListener("pagehide", function () { t.flush(); });
      t.refresh();
      if (cfg.poll > 0) setInterval(t.refresh, cfg.poll);
    } catch (e) { fail(e); }
  };
  t.track = function (event, properties) {
    try {
      enqueue({ type: "track", event: event, properties: properties || {} });
      noteChecklist(event);
    } catch (e) { fail(e); }
  };
  t.identify = function (userId, traits) {
    try {
      var before = get("userId");
      if (userId) set("userId", String(userId));
      enqueue({ type: "identify", traits: traits || {} });
      if (userId && String(userId) !== before) t.loadFlags();  // flags hash on the id
    } catch (e) { fail(e); }
  };
  t.page = function (name, properties) {
    try {
      var props = { path: location.pathname, url: location.href, title: document.title, referrer: document.referrer };
      var q = new URLSearchParams(location.search);
      ["source", "medium", "campaign", "term", "content"].forEach(function (k) {
        if (q.get("utm_" + k)) props["utm_" + k] = q.get("utm_" + k);
      });
      for (var k in properties || {}) props[k] = properties[k];
      enqueue({ type: "page", name: name || document.title, properties: props });
    } catch (e) { fail(e); }
  };
  t.flush = function () {
    clearTimeout(timer); timer = null;
    if (!queue.length || !cfg.writeKey) return Promise.resolve(null);
    var batch = queue.splice(0, 100);
    var p = request("POST", "/v1/batch", { batch: batch });
    if (queue.length) timer = setTimeout(t.flush, 0);
    return p;
  };
  t.reset = function () { set("userId", ""); try { store && store.removeItem("traction:userId"); } catch (e) { fail(e); } };

  /* -- flags ------------------------------------------------------------------------------- */

  var flags = {}, attributes = {}, listeners = [], viewed = {};
  t.loadFlags = function () {
    if (!cfg.clientKey) return Promise.resolve(null);
    try {
      var w = who(), attrs = {};
      for (var k in attributes) attrs[k] = attributes[k];
      attrs.id = w.userId || w.anonymousId;
      attrs.anonymousId = w.anonymousId;
      if (w.userId) attrs.userId = w.userId;
      return window.fetch(cfg.host + "/api/eval/" + encodeURIComponent(cfg.clientKey), {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ attributes: attrs, url: location.href })
      }).then(function (r) { return r.ok ? r.json() : null; }, function (e) { fail(e); return null; })
        .then(function (r) {
          if (!r || !r.features) return null;
          flags = r.features;
          listeners.forEach(function (cb) { try { cb(t); } catch (e) { fail(e); } });
          return flags;
        });
    } catch (e) { fail(e); return Promise.resolve(null); }
  };
  t.flag = function (key, fallback) {
    try {
      var f = flags[key];
      if (!f || f.defaultValue === undefined || f.defaultValue === null) return fallback;
      var track = f.rules && f.rules[0] && f.rules[0].tracks && f.rules[0].tracks[0];
      var res = track && track.result;
      if (res && res.inExperiment && res.hashUsed && !viewed[key]) {  // the exposure, once
        viewed[key] = true;
        var x = track.experiment || {};
        t.track("$experiment_viewed", { experiment_id: x.key, experiment_name: x.name || x.key,
          variation_id: res.variationId, variation_name: res.name || res.key,
          hash_attribute: res.hashAttribute, feature: key });
      }
      return f.defaultValue;
    } catch (e) { fail(e); return fallback; }
  };
  t.isOn = function (key) { return !!t.flag(key, false); };
  t.onFlags = function (callback) { listeners.push(callback); };
  t.setAttributes = function (attrs) {
    for (var k in attrs || {}) attributes[k] = attrs[k];
    return t.loadFlags();
  };

  /* -- in-app content --------------------------------------------------------------------- */

  var active = {};  // message id -> its data (checklists tick from track())
  t.refresh = function () {
    var w = who();
    var q = "?anonymousId=" + encodeURIComponent(w.anonymousId) + (w.userId ? "&userId=" + encodeURIComponent(w.userId) : "");
    return t.flush().then(function () { return request("GET", "/v1/inapp" + q); }).then(function (r) {
      if (!r || !r.messages) return;
      r.messages.forEach(function (m) { try { render(m); } catch (e) { fail(e); } });
    });
  };
  function report(m, what) {
    var w = who();
    var q = "?anonymousId=" + encodeURIComponent(w.anonymousId) + (w.userId ? "&userId=" + encodeURIComponent(w.userId) : "");
    request("POST", "/v1/inapp/" + m.id + "/" + what + q, {});
    var names = { shown: "$message_shown", clicked: "$message_clicked", dismissed: "$message_dismissed" };
    t.track(names[what], { message_id: m.id, journey: m.journey, step: m.step, kind: m.kind });
  }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text) e.textContent = text;  // text, never HTML: a message cannot inject markup
    return e;
  }
  function close(m, node, what) {
    if (node && node.parentNode) node.parentNode.removeChild(node);
    delete active[m.id];
    report(m, what || "dismissed");
  }
  var css = "position:fixed;z-index:2147483000;font:14px/1.4 system-ui,sans-serif;background:#111827;color:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 4px 20px rgba(0,0,0,.3);";
  function frame(m, style) {
    var box = el("div", { "data-traction-message": m.id, "data-kind": m.kind, role: m.kind === "modal" ? "dialog" : "status", style: css + style });
    box.appendChild(el("strong", {}, m.title));
    if (m.body) box.appendChild(el("div", {}, m.body));
    var x = el("button", { "aria-label": "Dismiss", "data-traction-dismiss": "", style: "position:absolute;top:4px;right:8px;background:none;border:0;color:#fff;cursor:pointer" }, "×");
    x.onclick = function () { close(m, box.__root || box, "dismissed"); };
    box.appendChild(x);
    if (m.cta_text) {
      var a = el("a", { href: m.cta_url || "#", "data-traction-cta": "", style: "display:inline-block;margin-top:8px;color:#a5b4fc" }, m.cta_text);
      a.onclick = function () { close(m, box.__root || box, "clicked"); };
      box.appendChild(a);
    }
    return box;
  }
  function place(target, box) {
    var r = target.getBoundingClientRect();
    box.style.top = (r.bottom + window.scrollY + 8) + "px";
    box.style.left = (r.left + window.scrollX) + "px";
    box.style.position = "absolute";
  }
  function render(m) {
    if (shown[m.id]) { if (m.kind === "checklist") drawChecklist(m); return; }
    if (m.kind === "tooltip" && !document.querySelector(m.selector)) return;  // not on this page
    shown[m.id] = true;
    active[m.id] = m;
    var box;
    if (m.kind === "banner") box = frame(m, "top:0;left:0;right:0;border-radius:0;");
    else if (m.kind === "modal") {
      var veil = el("div", { style: "position:fixed;inset:0;background:rgba(0,0,0,.4);z-index:2147482999" });
      box = frame(m, "top:30%;left:50%;transform:translateX(-50%);min-width:280px;max-width:90vw;");
      box.__root = veil;
      veil.appendChild(box);
      document.body.appendChild(veil);
      report(m, "shown");
      return;
    } else if (m.kind === "tooltip") { box = frame(m, "max-width:280px;"); place(document.querySelector(m.selector), box); }
    else if (m.kind === "checklist") { drawChecklist(m); report(m, "shown"); return; }
    else if (m.kind === "tour") { tour(m, 0); report(m, "shown"); return; }
    else return;
    document.body.appendChild(box);
    report(m, "shown");
  }
  function drawChecklist(m) {
    var old = document.querySelector('[data-traction-message="' + m.id + '"]');
    var done = m.tasks.filter(function (x) { return x.done; }).length;
    var box = frame({ id: m.id, kind: "checklist", title: m.title + " (" + done + "/" + m.tasks.length + ")", body: m.body, journey: m.journey, step: m.step }, "bottom:16px;right:16px;min-width:240px;");
    var list = el("ul", { style: "margin:8px 0 0;padding-left:18px" });
    m.tasks.forEach(function (task) {
      var li = el("li", { "data-task": task.event, "data-done": task.done ? "1" : "0" }, (task.done ? "✓ " : "") + task.title);
      if (task.done) li.style.textDecoration = "line-through";
      list.appendChild(li);
    });
    box.appendChild(list);
    if (old) old.parentNode.replaceChild(box, old); else document.body.appendChild(box);
    active[m.id] = m;
    if (done === m.tasks.length) {
      t.track("$checklist_completed", { message_id: m.id, journey: m.journey, step: m.step, title: m.title });
      setTimeout(function () { close(m, box, "dismissed"); }, 1500);
    }
  }
  function noteChecklist(event) {
    for (var id in active) {
      var m = active[id];
      if (m.kind !== "checklist") continue;
      m.tasks.forEach(function (task, i) {
        if (task.event === event && !task.done) {
          task.done = true;
          enqueue({ type: "track", event: "$checklist_step_completed", properties: { message_id: m.id, journey: m.journey, task: task.title, task_event: event, index: i } });
          drawChecklist(m);
        }
      });
    }
  }
  function tour(m, i) {
    var s = m.steps[i];
    var target = s && document.querySelector(s.selector);
    if (!s) { close(m, null, "clicked"); return; }
    if (!target) { tour(m, i + 1); return; }
    var box = frame({ id: m.id, kind: "tour", title: s.title, body: s.body, journey: m.journey, step: m.step }, "max-width:280px;");
    var next = el("button", { "data-traction-next": "", style: "margin-top:8px" }, i + 1 < m.steps.length ? "Next" : "Done");
    next.onclick = function () { box.parentNode.removeChild(box); tour(m, i + 1); };
    box.appendChild(next);
    place(target, box);
    document.body.appendChild(box);
    t.track("$tour_step_viewed", { message_id: m.id, journey: m.journey, index: i, selector: s.selector });
  }

  var pending = window.traction && window.traction.q;  // calls made before the script loaded
  window.traction = t;
  if (pending && pending.length) pending.forEach(function (c) { try { t[c[0]].apply(t, c[1]); } catch (e) { fail(e); } });
})(window, document);
