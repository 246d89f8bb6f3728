// Expand/collapse every fold, and show only the steps of one kind. No network, no data here.
(function () {
  "use strict";
  document.querySelectorAll("button[data-toggle]").forEach(function (button) {
    button.addEventListener("click", function () {
      var open = button.getAttribute("data-toggle") === "open";
      document.querySelectorAll("main details").forEach(function (d) { d.open = open; });
    });
  });
  var filter = document.getElementById("filter");
  filter.addEventListener("change", function () {
    document.querySelectorAll("[data-kind]").forEach(function (el) {
      el.classList.toggle("hidden", filter.value !== "" && el.getAttribute("data-kind") !== filter.value);
    });
  });
  document.body.setAttribute("data-ready", String(document.querySelectorAll("section.step").length));
})();
