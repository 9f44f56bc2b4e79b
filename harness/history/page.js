// seq-harness history page (harness/history/page.py): draws the selected machine's figures,
// embedded as JSON in #figures, with the embedded plotly.js; every element with a
// data-machine (its latency and checks, its drift against the anchor) shows for that machine
// only. The URL's hash selects a machine (#m1) and optionally a chart in it (#m1:latency-7), so
// a view can be linked to.
(function () {
  "use strict";
  var errors = document.getElementById("errors");
  function report(text) {
    errors.hidden = false;
    errors.textContent += text + "\n";
  }
  window.addEventListener("error", function (event) { report("error: " + event.message); });
  var figures = JSON.parse(document.getElementById("figures").textContent);
  var select = document.getElementById("machine");
  var drawn = {};

  // A few figures per task, top of the page first: a machine with hundreds of series shows
  // its first charts at once and stays responsive while the rest are drawn.
  var PER_TASK = 4;
  function draw(machine) {
    var waiting = (figures.machines[machine] || []).filter(function (f) { return !drawn[f.id]; });
    waiting.forEach(function (figure) { drawn[figure.id] = true; });
    function step() {
      waiting.splice(0, PER_TASK).forEach(function (figure) {
        try {
          Plotly.newPlot(document.getElementById(figure.id), figure.data, figure.layout,
                         figures.config).catch(function (e) { report(figure.id + ": " + e); });
        } catch (e) {
          report(figure.id + ": " + e);
        }
      });
      if (waiting.length) { window.setTimeout(step, 0); }
    }
    step();
  }

  function show(machine, target) {
    if (!Object.prototype.hasOwnProperty.call(figures.machines, machine)) {
      machine = select.options.length ? select.options[0].value : "";
    }
    select.value = machine;
    document.querySelectorAll("[data-machine]").forEach(function (section) {
      section.hidden = section.getAttribute("data-machine") !== machine;
    });
    draw(machine);
    var figure = target && document.getElementById("fig-" + target);
    if (figure) { figure.scrollIntoView(); }
  }

  function fromHash() {
    var parts = decodeURIComponent(window.location.hash.slice(1)).split(":");
    show(parts[0], parts[1]);
  }

  select.addEventListener("change", function () { window.location.hash = select.value; });
  window.addEventListener("hashchange", fromHash);
  fromHash();
}());
