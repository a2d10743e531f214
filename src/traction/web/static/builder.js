// The insight builder: a form over the insight spec. The JSON spec stays the source of truth
// (the textarea the Run form posts); every control reads and writes it, and "Edit as JSON"
// shows it for hand edits, which the form then follows. No build step, no dependencies.
(function () {
  "use strict";
  const root = document.getElementById("builder");
  if (!root) return;
  const ta = document.getElementById("spec");
  const jsonNote = document.getElementById("json-note");
  const ws = root.dataset.ws;
  const kind = root.dataset.kind;
  let spec = JSON.parse(ta.value);
  const cache = {};

  // -- catalog lookups (cached per URL) ---------------------------------------------------------
  function fetchJSON(url) {
    if (!cache[url]) cache[url] = fetch(url, { credentials: "same-origin" }).then((r) => (r.ok ? r.json() : []));
    return cache[url];
  }
  const events = () => fetchJSON(`/w/${ws}/data/events.json`).then((rows) => rows.map((r) => ({ value: r.name, hint: r.volume.toLocaleString() })));
  const props = (event) =>
    fetchJSON(`/w/${ws}/data/properties.json` + (event ? `?event=${encodeURIComponent(event)}` : "")).then((rows) =>
      rows.map((r) => ({ value: r.name, hint: r.type }))
    );
  const values = (event, prop) =>
    fetchJSON(`/w/${ws}/data/values.json?property=${encodeURIComponent(prop)}` + (event ? `&event=${encodeURIComponent(event)}` : "")).then((rows) =>
      rows.map((r) => ({ value: r.value, hint: r.count.toLocaleString() }))
    );

  // -- tiny DOM helpers -----------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
    return el;
  }
  function changed(rerender) {
    ta.value = JSON.stringify(spec, null, 2);
    if (rerender) render();
  }
  function select(name, options, current, onchange, label) {
    return h("select", { "aria-label": label || name, "data-field": name, onchange: (e) => onchange(e.target.value) },
      options.map(([v, text]) => h("option", { value: v, selected: String(v) === String(current) }, text)));
  }
  function number(name, current, onchange, attrs) {
    return h("input", Object.assign({ type: "number", value: current, "aria-label": name, "data-field": name, style: "width:6em",
      oninput: (e) => { if (e.target.value !== "") onchange(Number(e.target.value)); } }, attrs || {}));
  }
  function field(label, ...controls) {
    return h("div", { class: "bfield" }, h("span", { class: "blabel" }, label), ...controls);
  }

  // A searchable picker: type to filter, click an option to choose it (or keep what you typed).
  function picker(current, source, onpick, attrs) {
    const input = h("input", Object.assign({ value: current || "", autocomplete: "off", class: "picker-input" }, attrs || {}));
    const list = h("ul", { class: "picker-list", role: "listbox", hidden: true });
    const wrap = h("span", { class: "picker" }, input, list);
    // On focus, every option (the current value is not a search); once typing, the matches.
    async function show(e) {
      const q = e && e.type === "input" ? input.value.toLowerCase() : "";
      const options = (await source()).filter((o) => !q || o.value.toLowerCase().includes(q)).slice(0, 50);
      list.replaceChildren(...options.map((o) =>
        h("li", { role: "option", "data-value": o.value, onmousedown: (e) => { e.preventDefault(); input.value = o.value; list.hidden = true; onpick(o.value, true); } },
          o.value, h("span", { class: "muted small" }, " " + (o.hint || "")))));
      if (!options.length) list.append(h("li", { class: "muted small" }, "no match in the catalog"));
      list.hidden = false;
    }
    input.addEventListener("focus", show);
    input.addEventListener("input", (e) => { onpick(input.value, false); show(e); });
    input.addEventListener("blur", () => setTimeout(() => (list.hidden = true), 100));
    return wrap;
  }

  // -- the parts of specs ---------------------------------------------------------------------
  const OPERATORS = ["equals", "not_equals", "in", "not_in", "contains", "regex", "gt", "gte", "lt", "lte", "before", "after", "is_set", "is_not_set"];
  const NUMERIC = new Set(["gt", "gte", "lt", "lte"]);
  function typedValue(op, text) {
    if (op === "is_set" || op === "is_not_set") return undefined;
    const one = (t) => (t !== "" && !isNaN(Number(t)) && (NUMERIC.has(op) || /^-?\d+(\.\d+)?$/.test(t)) ? Number(t) : t);
    if (op === "in" || op === "not_in") return text.split(",").map((t) => t.trim()).filter(Boolean).map(one);
    return NUMERIC.has(op) ? Number(text) : one(text);
  }
  function shownValue(v) { return Array.isArray(v) ? v.join(", ") : v === undefined || v === null ? "" : String(v); }

  function filterRow(matcher, f, i, testid) {
    const remove = h("button", { type: "button", class: "link", "aria-label": "remove filter", onclick: () => { matcher.filters.splice(i, 1); if (!matcher.filters.length) delete matcher.filters; changed(true); } }, "×");
    const value = picker(shownValue(f.value), () => (f.property ? values(matcher.event, f.property) : Promise.resolve([])), (v) => {
      const t = typedValue(f.operator || "equals", v);
      if (t === undefined) delete f.value; else f.value = t;
      changed(false);
    }, { "aria-label": "value", "data-testid": `${testid}-value`, placeholder: "value", disabled: f.operator === "is_set" || f.operator === "is_not_set" });
    return h("div", { class: "bfilter", "data-testid": testid },
      h("span", { class: "muted" }, "where "),
      picker(f.property, () => props(matcher.event), (v, picked) => { f.property = v; changed(picked); }, { "aria-label": "property", "data-testid": `${testid}-property`, placeholder: "property" }),
      select("operator", OPERATORS.map((o) => [o, o.replace("_", " ")]), f.operator || "equals", (v) => {
        f.operator = v;
        if (v === "is_set" || v === "is_not_set") delete f.value;
        else if (f.value !== undefined) f.value = typedValue(v, shownValue(f.value));
        changed(true);
      }, "operator"),
      value, remove);
  }

  function matcherEditor(m, testid, onremove) {
    const row = h("div", { class: "bmatcher", "data-testid": testid },
      picker(m.event, events, (v, picked) => { m.event = v; changed(picked); }, { "aria-label": "event", "data-testid": `${testid}-event`, placeholder: "event name" }),
      h("button", { type: "button", class: "link small", "data-testid": `${testid}-add-filter`, onclick: () => { (m.filters = m.filters || []).push({ property: "", operator: "equals" }); changed(true); } }, "+ filter"),
      onremove ? h("button", { type: "button", class: "link small", "aria-label": "remove", onclick: onremove }, "remove") : null);
    (m.filters || []).forEach((f, i) => row.append(filterRow(m, f, i, `${testid}-filter-${i}`)));
    return row;
  }

  function listOf(items, make, testid, addLabel, blank, min) {
    const box = h("div", { class: "blist", "data-testid": testid });
    items.forEach((item, i) => {
      const move = (d) => { const j = i + d; [items[i], items[j]] = [items[j], items[i]]; changed(true); };
      box.append(h("div", { class: "bitem" },
        h("span", { class: "muted" }, `${i + 1}.`),
        make(item, i, items.length > min ? () => { items.splice(i, 1); changed(true); } : null),
        i > 0 ? h("button", { type: "button", class: "link small", "aria-label": "move up", onclick: () => move(-1) }, "↑") : null,
        i < items.length - 1 ? h("button", { type: "button", class: "link small", "aria-label": "move down", onclick: () => move(1) }, "↓") : null));
    });
    box.append(h("button", { type: "button", class: "link", "data-testid": `${testid}-add`, onclick: () => { items.push(blank()); changed(true); } }, addLabel));
    return box;
  }

  function optionalMatcher(key, label) {
    const m = spec[key];
    if (!m) return field(label, h("span", { class: "muted" }, "any event "),
      h("button", { type: "button", class: "link small", "data-testid": `${key}-set`, onclick: () => { spec[key] = { event: "" }; changed(true); } }, "choose an event"));
    return field(label, matcherEditor(m, key, () => { delete spec[key]; changed(true); }));
  }

  const RELATIVE = [["last_7_days", "Last 7 days"], ["last_30_days", "Last 30 days"], ["last_90_days", "Last 90 days"], ["this_week", "This week"],
    ["this_month", "This month"], ["last_month", "Last month"], ["this_year", "This year"], ["yesterday", "Yesterday"], ["today", "Today"]];
  function rangeEditor() {
    const r = spec.range || (spec.range = { relative: "last_30_days" });
    const mode = r.relative ? (r.relative.startsWith("since:") ? "since" : r.relative) : "fixed";
    const out = [select("range", [...RELATIVE, ["since", "Since…"], ["fixed", "Fixed dates"]], mode, (v) => {
      const today = new Date().toISOString().slice(0, 10);
      if (v === "fixed") spec.range = { date_from: r.date_from || today, date_to: r.date_to || today };
      else if (v === "since") spec.range = { relative: "since:" + (r.date_from || today) };
      else spec.range = { relative: v };
      changed(true);
    }, "date range")];
    if (mode === "since") out.push(h("input", { type: "date", "aria-label": "since", value: r.relative.slice(6), onchange: (e) => { spec.range = { relative: "since:" + e.target.value }; changed(false); } }));
    if (mode === "fixed") {
      out.push(h("input", { type: "date", "aria-label": "from", value: r.date_from, onchange: (e) => { r.date_from = e.target.value; changed(false); } }));
      out.push(h("input", { type: "date", "aria-label": "to", value: r.date_to, onchange: (e) => { r.date_to = e.target.value; changed(false); } }));
    }
    return field("Dates", ...out);
  }
  const interval = (choices) => field("Interval", select("interval", choices.map((c) => [c, c]), spec.interval || (kind === "trend" ? "day" : "week"), (v) => { spec.interval = v; changed(false); }));
  const aggregate = () => field("Count", select("aggregate_by", [["person", "people"], ["account", "accounts"]], spec.aggregate_by || "person", (v) => { spec.aggregate_by = v; changed(false); }));
  function breakdown() {
    const eventsUsed = kind === "funnel" ? (spec.steps || []).map((s) => s.event) : (spec.series || []).map((s) => s.event && s.event.event);
    const source = () => Promise.all(eventsUsed.filter(Boolean).map((e) => props(e))).then((lists) => {
      const seen = new Map(); lists.flat().forEach((p) => seen.set(p.value, p)); return [...seen.values()];
    });
    return field("Breakdown", picker(spec.breakdown || "", source, (v, picked) => { if (v) spec.breakdown = v; else delete spec.breakdown; changed(picked); },
      { "aria-label": "breakdown", "data-testid": "breakdown", placeholder: "none: pick a property" }),
      spec.breakdown ? h("button", { type: "button", class: "link small", onclick: () => { delete spec.breakdown; changed(true); } }, "clear") : null);
  }

  // -- one form per kind ----------------------------------------------------------------------
  const MATH = ["total", "unique_persons", "unique_accounts", "sum", "avg", "min", "max", "p50", "p90", "p99"];
  const FORMS = {
    funnel: () => [
      field("Steps", listOf(spec.steps = spec.steps || [], (m, i, rm) => matcherEditor(m, `step-${i}`, rm), "steps", "+ add step", () => ({ event: "" }), 2)),
      field("Within", number("window_days", spec.window_days ?? 14, (v) => { spec.window_days = v; changed(false); }, { min: 0.01, step: "any" }), h("span", { class: "muted" }, " days of the first step")),
      field("Order", select("mode", [["ordered", "in order"], ["strict", "strictly in order (nothing between)"], ["unordered", "any order"]], spec.mode || "ordered", (v) => { spec.mode = v; changed(false); })),
      breakdown(), aggregate(), rangeEditor(),
    ],
    trend: () => [
      field("Series", listOf(spec.series = spec.series || [], (s, i, rm) => h("span", {},
        matcherEditor(s.event = s.event || { event: "" }, `series-${i}`, rm),
        select("math", MATH.map((m) => [m, m.replace("_", " ")]), s.math || "total", (v) => { s.math = v; if (!["sum", "avg", "min", "max", "p50", "p90", "p99"].includes(v)) delete s.math_property; changed(true); }, "math"),
        ["sum", "avg", "min", "max", "p50", "p90", "p99"].includes(s.math) ? picker(s.math_property || "", () => props(s.event.event), (v) => { s.math_property = v; changed(false); }, { "aria-label": "of property", placeholder: "numeric property" }) : null),
        "series", "+ add series", () => ({ event: { event: "" }, math: "total" }), 1)),
      interval(["hour", "day", "week", "month"]), breakdown(), rangeEditor(),
    ],
    retention: () => [
      optionalMatcher("start_event", "Cohort by first"), optionalMatcher("return_event", "Came back with"),
      interval(["day", "week", "month"]),
      field("Periods", number("periods", spec.periods ?? 8, (v) => { spec.periods = v; changed(false); }, { min: 1, max: 90 })),
      field("Returned", select("bounded", [["true", "in exactly that period"], ["false", "in that period or later"]], String(spec.bounded ?? true), (v) => { spec.bounded = v === "true"; changed(false); })),
      aggregate(), rangeEditor(),
    ],
    activation: () => {
      spec.start_event = spec.start_event || { event: "" };
      const crit = spec.criteria && spec.criteria.all ? spec.criteria : (spec.criteria = { all: [{ event: { event: "" } }] });
      return [
        field("Starts with", matcherEditor(spec.start_event, "start_event")),
        field("Activated when all of", listOf(crit.all, (c, i, rm) => matcherEditor(c.event = c.event || { event: "" }, `criterion-${i}`, rm), "criteria", "+ add condition", () => ({ event: { event: "" } }), 1)),
        field("Within", number("window_days", spec.window_days ?? 7, (v) => { spec.window_days = v; changed(false); }, { min: 0.01, step: "any" }), h("span", { class: "muted" }, " days")),
        interval(["day", "week", "month"]), aggregate(), rangeEditor(),
      ];
    },
    sessions: () => [
      field("New session after", number("gap_minutes", spec.gap_minutes ?? 30, (v) => { spec.gap_minutes = v; changed(false); }, { min: 1 }), h("span", { class: "muted" }, " minutes idle")),
      field("Describe the first", number("first_sessions", spec.first_sessions ?? 3, (v) => { spec.first_sessions = v; changed(false); }, { min: 1, max: 20 }), h("span", { class: "muted" }, " sessions")),
      aggregate(), rangeEditor(),
    ],
    active_users: () => [optionalMatcher("active_event", "Active means"), aggregate(), rangeEditor()],
    lifecycle: () => [optionalMatcher("active_event", "Active means"), interval(["day", "week", "month"]), aggregate(), rangeEditor()],
    feature_adoption: () => [
      field("Features", listOf(spec.features = spec.features || [], (m, i, rm) => matcherEditor(m, `feature-${i}`, rm), "features", "+ add feature", () => ({ event: "" }), 1)),
      aggregate(), rangeEditor(),
    ],
  };

  function render() {
    root.replaceChildren(...FORMS[kind]());
  }

  // -- JSON, both ways ----------------------------------------------------------------------------
  ta.addEventListener("input", () => {
    try {
      spec = JSON.parse(ta.value);
      jsonNote.textContent = "";
      render();
    } catch (e) {
      jsonNote.textContent = "Not valid JSON yet: the form keeps the last valid spec.";
    }
  });
  document.getElementById("toggle-json").addEventListener("click", (e) => {
    const box = document.getElementById("json-box");
    box.hidden = !box.hidden;
    e.target.textContent = box.hidden ? "Edit as JSON" : "Hide JSON";
  });
  changed(true);
})();
