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
  document.addEventListener("click", (e) => {
    const el = e.target.closest("[data-clear-on-click]");
    if (el) for (const name of el.dataset.clearOnClick.split(" ")) el.form.elements[name].value = "";
  });
})();
