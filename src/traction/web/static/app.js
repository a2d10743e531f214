// Behaviour the pages used to carry in inline handlers, which the Content-Security-Policy
// forbids: bound here by data attributes instead.
(function () {
  "use strict";
  document.addEventListener("change", (e) => {
    const el = e.target;
    if (el.matches("select[data-switch-workspace]")) {
      location.href = "/w/" + el.value + "/" + el.dataset.switchWorkspace;
    } else if (el.matches("[data-autosubmit]")) {
      for (const name of (el.dataset.clear || "").split(" ").filter(Boolean)) el.form.elements[name].value = "";
      el.form.submit();
    }
  });
  // Every POST form carries the session's CSRF token (htmx sends it as a header).
  document.addEventListener("submit", (e) => {
    const form = e.target;
    // a form with data-confirm asks first (erasing a person cannot be undone)
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      e.preventDefault();
      e.stopImmediatePropagation();
      return;
    }
    const meta = document.querySelector('meta[name="csrf-token"]');
    if (!meta || (form.method || "").toLowerCase() !== "post" || form.elements.csrf_token) return;
    const field = document.createElement("input");
    field.type = "hidden";
    field.name = "csrf_token";
    field.value = meta.content;
    form.append(field);
  }, true);
  document.addEventListener("click", (e) => {
    const el = e.target.closest("[data-clear-on-click]");
    if (el) for (const name of el.dataset.clearOnClick.split(" ")) el.form.elements[name].value = "";
  });
})();
