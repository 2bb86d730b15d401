// Bellhop explorer: facets, ranges, counts, rows and a histogram of a dataset.
//
// The session and its rpc calls are in session.js. Every filter change sends
// one batch: the filtered page with facet counts, the histogram, and one count
// per facet field that has selections. That last count leaves the field's own
// selection out, so its unchecked values show what adding them would match.
// A failed query leaves the last results on screen, marked out of date, with
// the error beside the count and, for a range, under the range's inputs.
//
// At most one query is in flight. A change made meanwhile marks a query as
// pending, and the latest filters are sent when the one in flight finishes,
// so rapid clicks cost one batch per round trip. When the gateway rate-limits
// a query anyway, the page waits the retry_after_s of the error and sends the
// latest filters again, without showing the error.
"use strict";

(function () {
  const { rpc, rpcRetrying, request, resultOf, checkRateLimit, retryDelayMs, sleep } =
    window.BellhopSession;
  const Ranges = window.BellhopRanges;
  const PAGE_ROWS = 20;
  const MAX_FACET_VALUES = 120;
  const HISTOGRAM_BINS = 30;
  const DEFAULT_HISTOGRAM_FIELD = "arr_delay";
  const NUMBER_TYPES = new Set(["int", "float"]);
  const LOADING_STATES = new Set(["provisioning", "starting", "loading"]);
  // Phones start with every filter group folded, so the results stay close.
  const WIDE_SCREEN = window.matchMedia("(min-width: 800px)");

  const params = new URLSearchParams(window.location.search);
  const DEFAULT_DATASET = "flights";
  const dataset = params.get("dataset") || DEFAULT_DATASET;

  const state = {
    fields: {},
    facetFields: [],
    numericFields: [],
    columns: [],
    histogramRange: {},
    selected: {},
    ranges: {},
    // Error message per range field whose inputs contain an unusable bound.
    invalidRanges: {},
    ready: false,
    // Whether `describe` returned a result, so the dataset did load once.
    described: false,
    ended: false,
    querySeq: 0,
    queryTimer: null,
    queryRunning: false,
    queryPending: false,
  };

  const $ = (selector) => document.querySelector(selector);

  // Status display.

  function showState(name, message, progress) {
    const badge = $("#state");
    badge.textContent = name;
    badge.dataset.state = name;
    $("#message").textContent = message || "";
    const percent = Math.round(Math.max(0, Math.min(1, progress || 0)) * 100);
    const bar = $("#progress");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.dataset.progress = String(percent);
    bar.querySelector(".progress-fill").style.width = percent + "%";
    bar.hidden = !LOADING_STATES.has(name);
  }

  function showError(text) {
    const box = $("#error");
    box.textContent = text || "";
    box.hidden = !text;
  }

  // Show a query error beside the count, or clear it with an empty text. While
  // it shows, the count, histogram and rows are marked out of date.
  function showQueryError(text) {
    const line = $("#query-error");
    line.textContent = text || "";
    line.hidden = !text;
    $("#stale").hidden = !text;
    $(".results").dataset.stale = text ? "true" : "false";
  }

  function endSession(name, message) {
    state.ready = false;
    state.ended = true;
    clearTimeout(state.queryTimer);
    $("#filters").disabled = true;
    $("#clear").disabled = true;
    $("#histogram-field").disabled = true;
    $("#ended-title").textContent =
      name === "failed" ? "Session failed." : "Session ended.";
    $("#ended-reason").textContent = message || "no reason was given";
    $("#ended").dataset.reason = message || "";
    // Only a session that showed results leaves numbers behind.
    $("#ended-stale").hidden = $("#count").dataset.count === undefined;
    // A session whose dataset never loaded (an unknown name, say) would fail
    // the same way again, so offer the default dataset beside the restart.
    const neverLoaded = name === "failed" && !state.described;
    const defaultLink = $("#default-dataset");
    if (neverLoaded && dataset !== DEFAULT_DATASET) {
      const others = new URLSearchParams(params);
      others.delete("dataset");
      const query = others.toString();
      defaultLink.href = window.location.pathname + (query ? "?" + query : "");
      defaultLink.hidden = false;
    } else {
      defaultLink.hidden = true;
    }
    $("#ended").hidden = false;
    $("#explorer").setAttribute("aria-busy", "false");
  }

  // Controls built from `describe`.

  function facetValues(info) {
    const entries = Object.entries(info.values || {});
    if (info.type === "int" || info.type === "float") {
      entries.sort((a, b) => Number(a[0]) - Number(b[0]));
    } else {
      entries.sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    }
    return entries;
  }

  function typedValue(field, text) {
    const type = state.fields[field].type;
    return type === "int" || type === "float" ? Number(text) : text;
  }

  function buildFacet(field, info) {
    const group = document.createElement("details");
    group.className = "facet";
    group.dataset.facet = field;
    group.open = WIDE_SCREEN.matches;
    group.appendChild(groupSummary(field));
    const list = document.createElement("div");
    list.className = "facet-values";
    for (const [value, count] of facetValues(info)) {
      const label = document.createElement("label");
      label.dataset.value = value;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = value;
      box.addEventListener("change", () => toggleValue(field, value, box.checked));
      const name = document.createElement("span");
      name.className = "value";
      name.textContent = value;
      const number = document.createElement("span");
      number.className = "facet-count";
      number.textContent = count.toLocaleString();
      label.append(box, name, number);
      list.appendChild(label);
    }
    group.appendChild(list);
    return group;
  }

  function groupSummary(field) {
    const summary = document.createElement("summary");
    const count = document.createElement("span");
    count.className = "selected-count";
    summary.append(field + " ", count);
    return summary;
  }

  // Show "(n)" after a filter group's name, so a folded group shows how many
  // of its values or ranges are in use.
  function showSelectedCount(group, n) {
    group.querySelector(".selected-count").textContent = n ? `(${n})` : "";
    group.classList.toggle("active", n > 0);
  }

  function buildControls(description) {
    state.fields = description.fields;
    state.facetFields = [];
    state.numericFields = [];
    const facets = $("#facets");
    const ranges = $("#ranges");
    facets.replaceChildren();
    ranges.replaceChildren();
    for (const [field, info] of Object.entries(description.fields)) {
      const values = Object.keys(info.values || {}).length;
      if (info.kind === "facet" && values > 1 && values <= MAX_FACET_VALUES) {
        state.facetFields.push(field);
        facets.appendChild(buildFacet(field, info));
      }
      if (info.numeric && NUMBER_TYPES.has(info.type)) state.numericFields.push(field);
      if (Ranges.rangeable(info)) {
        ranges.appendChild(Ranges.build(field, info, (row) => changeRange(field, row)));
      }
    }
    state.columns = Object.keys(description.fields);
    $("#ranges-group").hidden = !ranges.children.length;
    $("#ranges-group").open = WIDE_SCREEN.matches;
    $("#total").textContent = description.rows.toLocaleString();
    buildHistogramChoice();
    buildTableHead();
  }

  function buildHistogramChoice() {
    const select = $("#histogram-field");
    select.replaceChildren();
    for (const field of state.numericFields) {
      const option = document.createElement("option");
      option.value = option.textContent = field;
      select.appendChild(option);
    }
    if (state.numericFields.includes(DEFAULT_HISTOGRAM_FIELD)) {
      select.value = DEFAULT_HISTOGRAM_FIELD;
    }
  }

  function buildTableHead() {
    const row = document.createElement("tr");
    for (const column of state.columns) {
      const cell = document.createElement("th");
      cell.scope = "col";
      cell.textContent = column;
      row.appendChild(cell);
    }
    $("#rows thead").replaceChildren(row);
  }

  // Filter state.

  function toggleValue(field, value, checked) {
    const values = new Set(state.selected[field] || []);
    if (checked) values.add(value);
    else values.delete(value);
    if (values.size) state.selected[field] = [...values];
    else delete state.selected[field];
    showSelectedCount(document.querySelector(`[data-facet="${field}"]`), values.size);
    updateClearButton();
    scheduleQuery();
  }

  function changeRange(field, row) {
    if (state.ended) return;
    const { bounds, error } = Ranges.read(row);
    const previous = JSON.stringify(state.ranges[field] || null);
    delete state.ranges[field];
    delete state.invalidRanges[field];
    if (error) state.invalidRanges[field] = error;
    else if (bounds.some((bound) => bound !== null)) state.ranges[field] = bounds;
    showSelectedCount($("#ranges-group"), Object.keys(state.ranges).length);
    updateClearButton();
    const changed = previous !== JSON.stringify(state.ranges[field] || null);
    if (error || changed || $("#query-error").textContent) scheduleQuery();
  }

  function updateClearButton() {
    const inUse = [state.selected, state.ranges, state.invalidRanges].some(
      (filters) => Object.keys(filters).length > 0,
    );
    $("#clear").disabled = state.ended || !inUse;
  }

  function showFieldError(error) {
    const data = error.data || {};
    if (data.setting !== "range" || !data.field) return;
    const row = document.querySelector(`[data-range="${data.field}"]`);
    if (row) Ranges.showError(row, error.message);
  }

  function clearRangeErrors() {
    document.querySelectorAll("#ranges .range.invalid").forEach((row) => {
      if (!(row.dataset.range in state.invalidRanges)) Ranges.showError(row, "");
    });
  }

  function clearFilters() {
    state.selected = {};
    state.ranges = {};
    document.querySelectorAll("#facets input:checked").forEach((box) => {
      box.checked = false;
    });
    state.invalidRanges = {};
    document.querySelectorAll("#ranges input").forEach((input) => {
      input.value = "";
    });
    document.querySelectorAll("#ranges .range").forEach((row) => {
      Ranges.showError(row, "");
    });
    document.querySelectorAll(".facet").forEach((group) => showSelectedCount(group, 0));
    updateClearButton();
    scheduleQuery();
  }

  function conditions(leaveOut) {
    const where = {};
    for (const [field, values] of Object.entries(state.selected)) {
      if (field !== leaveOut) where[field] = values.map((v) => typedValue(field, v));
    }
    return { where: where, range: { ...state.ranges } };
  }

  // Queries.

  function scheduleQuery() {
    clearTimeout(state.queryTimer);
    state.queryTimer = setTimeout(runQuery, 60);
  }

  function histogramField() {
    return $("#histogram-field").value;
  }

  async function histogramRange(field) {
    if (!(field in state.histogramRange)) {
      const metrics = [1, 99].map((q) => ({ op: "percentile", field: field, q: q }));
      const result = resultOf(await rpc(request("compute", { metrics: metrics })));
      const [low, high] = result.metrics.map((metric) => metric.value);
      const usable = low !== null && high !== null && high > low;
      state.histogramRange[field] = usable ? [low, high] : null;
    }
    return state.histogramRange[field];
  }

  // Show the first unusable range bound and drop the response of the query in
  // flight. Return false when every range is usable.
  function flagInvalidRange() {
    const invalid = Object.values(state.invalidRanges);
    if (!invalid.length) return false;
    state.querySeq += 1;
    showQueryError("Not updated: " + invalid[0]);
    return true;
  }

  async function runQuery() {
    if (!state.ready || flagInvalidRange()) return;
    if (state.queryRunning) {
      state.queryPending = true;
      return;
    }
    state.queryRunning = true;
    try {
      do {
        state.queryPending = false;
        await runLatestQuery();
      } while (state.queryPending);
    } finally {
      state.queryRunning = false;
    }
  }

  async function runLatestQuery() {
    if (!state.ready || flagInvalidRange()) return;
    try {
      await sendQuery();
    } catch (error) {
      const delayMs = retryDelayMs(error);
      if (delayMs === null) {
        showQueryError("Query failed: " + error.message);
        return;
      }
      // The filters may change during the wait, so runQuery sends the latest
      // ones rather than the rejected batch.
      await sleep(delayMs);
      state.queryPending = true;
    }
  }

  async function sendQuery() {
    const seq = ++state.querySeq;
    const field = histogramField();
    const bounds = field ? await histogramRange(field) : null;
    const batch = [
      request("filter", { ...conditions(null), limit: PAGE_ROWS, fields: state.columns }),
    ];
    if (field) {
      const metric = { op: "histogram", field: field, bins: HISTOGRAM_BINS };
      if (bounds) metric.range = bounds;
      batch.push(request("compute", { ...conditions(null), metrics: [metric] }));
    }
    const partial = Object.keys(state.selected);
    for (const leaveOut of partial) {
      batch.push(
        request("filter", { ...conditions(leaveOut), limit: 0, facets: [leaveOut] }),
      );
    }
    const started = performance.now();
    const responses = await rpc(batch);
    const roundTripMs = performance.now() - started;
    if (seq !== state.querySeq) return; // a range became unusable meanwhile
    checkRateLimit(responses);
    showResults(responses, field, partial, roundTripMs);
  }

  function showResults(responses, field, partial, roundTripMs) {
    try {
      if (!Array.isArray(responses)) resultOf(responses);
      const filtered = resultOf(responses[0]);
      const facets = { ...filtered.facets };
      partial.forEach((name, n) => {
        const other = resultOf(responses[(field ? 2 : 1) + n]);
        facets[name] = other.facets[name];
      });
      showQueryError("");
      clearRangeErrors();
      showCount(filtered, roundTripMs);
      showFacetCounts(facets);
      showRows(filtered.rows);
      if (field) showHistogram(field, resultOf(responses[1]).metrics[0]);
      updateClearButton();
    } catch (error) {
      showFieldError(error);
      showQueryError("Query failed: " + error.message);
    }
  }

  // Result display.

  function showCount(filtered, roundTripMs) {
    $("#count").textContent = filtered.count.toLocaleString();
    $("#count").dataset.count = String(filtered.count);
    $("#rtt").textContent = roundTripMs.toFixed(1);
    $("#took").textContent = filtered.took_ms.toFixed(2);
    const item = document.createElement("li");
    item.textContent =
      `${filtered.count.toLocaleString()} rows: round trip ${roundTripMs.toFixed(1)} ms, ` +
      `worker ${filtered.took_ms.toFixed(2)} ms`;
    const list = $("#timings");
    list.prepend(item);
    while (list.children.length > 10) list.lastElementChild.remove();
  }

  function showFacetCounts(facets) {
    for (const field of state.facetFields) {
      const counts = facets[field] || {};
      const group = document.querySelector(`[data-facet="${field}"]`);
      group.querySelectorAll("label").forEach((label) => {
        const count = counts[label.dataset.value] || 0;
        label.querySelector(".facet-count").textContent = count.toLocaleString();
        label.classList.toggle("empty", count === 0);
      });
    }
  }

  function showRows(rows) {
    const body = $("#rows tbody");
    body.replaceChildren();
    for (const row of rows || []) {
      const line = document.createElement("tr");
      for (const column of state.columns) {
        const cell = document.createElement("td");
        const value = row[column];
        cell.textContent = value === null || value === undefined ? "" : String(value);
        line.appendChild(cell);
      }
      body.appendChild(line);
    }
  }

  function showHistogram(field, metric) {
    const svg = $("#histogram");
    svg.replaceChildren();
    svg.dataset.field = field;
    const value = metric.value || { edges: [], counts: [], outside: 0 };
    const counts = value.counts;
    const highest = Math.max(1, ...counts);
    const width = 600 / Math.max(1, counts.length);
    counts.forEach((count, n) => {
      const bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      const height = (count / highest) * 196;
      bar.setAttribute("x", String(n * width + 1));
      bar.setAttribute("y", String(200 - height));
      bar.setAttribute("width", String(Math.max(1, width - 2)));
      bar.setAttribute("height", String(height));
      bar.dataset.count = String(count);
      const tip = document.createElementNS("http://www.w3.org/2000/svg", "title");
      tip.textContent = `${value.edges[n]} to ${value.edges[n + 1]}: ${count}`;
      bar.appendChild(tip);
      svg.appendChild(bar);
    });
    const edges = value.edges;
    $("#histogram-min").textContent = edges.length ? String(edges[0]) : "";
    $("#histogram-max").textContent = edges.length ? String(edges[edges.length - 1]) : "";
    const note = $("#histogram-note");
    note.textContent =
      `${value.outside.toLocaleString()} outside the range, ` +
      `${metric.missing.toLocaleString()} missing`;
    note.dataset.outside = String(value.outside);
    note.dataset.missing = String(metric.missing);
  }

  // Session lifecycle.

  async function onReady() {
    try {
      // After a reconnect the controls and their selections are kept.
      if (!state.facetFields.length) {
        buildControls(resultOf(await rpcRetrying(request("describe"))));
        state.described = true;
      }
      state.ready = true;
      $("#explorer").setAttribute("aria-busy", "false");
      await runQuery();
    } catch (error) {
      showError("Could not read the dataset: " + error.message);
    }
  }

  function onSession(event) {
    showState(event.state, event.message, event.progress);
    $("#session-id").textContent = event.session_id;
    if (event.dataset) $("#dataset-name").textContent = event.dataset;
    if (event.state === "ended" || event.state === "failed") {
      endSession(event.state, event.message);
      return;
    }
    if (event.state === "ready" && !state.ready) onReady();
  }

  function onDisconnect(reason) {
    state.ready = false;
    if (reason === "io server disconnect") {
      // The gateway sends an ended or failed state before it disconnects.
      if (!state.ended) {
        const message = "The gateway closed this connection.";
        showState("ended", message, 0);
        endSession("ended", message);
      }
      return;
    }
    showState("reconnecting", "Connection lost (" + reason + "); reconnecting…", 0);
  }

  function connect() {
    try {
      window.BellhopSession.open(dataset, {
        onSession: onSession,
        onOffline: (message) => showState("offline", message, 0),
        onDisconnect: onDisconnect,
      });
    } catch (error) {
      showState("offline", "", 0);
      showError(error.message);
    }
  }

  function restart() {
    window.BellhopSession.forget();
    window.location.reload();
  }

  $("#clear").addEventListener("click", clearFilters);
  $("#restart").addEventListener("click", restart);
  $("#histogram-field").addEventListener("change", scheduleQuery);
  showState("connecting", "Connecting to the gateway…", 0);
  connect();
})();
