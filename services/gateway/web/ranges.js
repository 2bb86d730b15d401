// Bellhop range filters: a min and a max input per numeric field, how their
// entries are read, and how an invalid entry is marked on the inputs.
//
// Number fields get number inputs. Timestamp fields get datetime-local inputs,
// whose value the worker reads as an ISO 8601 time in UTC.
"use strict";

window.BellhopRanges = (function () {
  const NUMBER_TYPES = new Set(["int", "float"]);

  // Whether a field gets a range: every numeric field with more than one
  // value, facets included, because a facet with too many values gets no
  // checkbox list.
  function rangeable(info) {
    const type = NUMBER_TYPES.has(info.type) || info.type === "timestamp";
    return Boolean(info.numeric && type && info.min !== null && info.min !== info.max);
  }

  // Build the row of one field. onChange(row) runs when the user leaves an input.
  function build(field, info, onChange) {
    const row = document.createElement("div");
    const timestamp = info.type === "timestamp";
    row.className = timestamp ? "range timestamp" : "range";
    row.dataset.range = field;
    const title = document.createElement("span");
    title.className = "range-name";
    title.textContent = timestamp ? field + " (UTC)" : field;
    title.title = field;
    row.appendChild(title);
    const error = document.createElement("p");
    error.className = "range-error";
    error.id = "range-error-" + field;
    error.hidden = true;
    for (const bound of ["min", "max"]) {
      if (timestamp) row.appendChild(boundName(bound));
      const input = boundInput(field, bound, info, error.id);
      // A number input fires no change event when its text is not a number,
      // so leaving the input counts as a change too.
      input.addEventListener("change", () => onChange(row));
      input.addEventListener("blur", () => onChange(row));
      row.appendChild(input);
    }
    row.appendChild(error);
    return row;
  }

  function boundName(bound) {
    const name = document.createElement("span");
    name.className = "bound-name";
    name.textContent = bound;
    return name;
  }

  function boundInput(field, bound, info, errorId) {
    const input = document.createElement("input");
    if (info.type === "timestamp") {
      input.type = "datetime-local";
      input.min = String(info.min).slice(0, 16);
      input.max = String(info.max).slice(0, 16);
    } else {
      input.type = "number";
      input.inputMode = "decimal";
      input.step = "any";
      input.placeholder = String(info[bound]);
    }
    input.dataset.bound = bound;
    input.setAttribute("aria-label", field + " " + bound);
    input.setAttribute("aria-describedby", errorId);
    return input;
  }

  // Read one input: {value} (null when empty) or {error} with the fix.
  function readBound(input) {
    const name = input.getAttribute("aria-label");
    // Chromium 156 reports badInput for "1e", "-" and an overflow such as "1e400".
    if (input.validity.badInput) {
      const expected = input.type === "number" ? "a valid number" : "a complete date and time";
      return { error: `${name} is not ${expected}; correct or clear it.` };
    }
    if (input.value === "") return { value: null };
    if (input.type !== "number") return { value: input.value };
    const number = Number(input.value);
    if (!Number.isFinite(number)) {
      // NOTE: untested, because Chromium flags an overflow as badInput above.
      return { error: `${name} ${input.value} is too large; enter a smaller number.` };
    }
    return { value: number };
  }

  // Read a row: {bounds: [min, max]} with null for an open end, or {error}.
  // An invalid entry is marked on its input, and a valid read clears the marks.
  function read(row) {
    const inputs = [...row.querySelectorAll("input")];
    const entries = inputs.map(readBound);
    const bad = inputs.filter((input, n) => entries[n].error);
    if (bad.length) {
      const message = entries.find((entry) => entry.error).error;
      showError(row, message, bad);
      return { error: message };
    }
    showError(row, "");
    return { bounds: entries.map((entry) => entry.value) };
  }

  // Mark inputs (by default both) invalid with message under the row, or
  // clear every mark of the row when message is empty.
  function showError(row, message, inputs) {
    const marked = inputs || [...row.querySelectorAll("input")];
    row.querySelectorAll("input").forEach((input) => {
      const invalid = Boolean(message) && marked.includes(input);
      input.setCustomValidity(invalid ? message : "");
      input.setAttribute("aria-invalid", invalid ? "true" : "false");
    });
    const line = row.querySelector(".range-error");
    line.textContent = message;
    line.hidden = !message;
    row.classList.toggle("invalid", Boolean(message));
  }

  return { rangeable, build, read, showError };
})();
