// The submit form: a refusal (SubmitRejected) is shown next to the field it names.

import { errorBox, fill, h, jobHref } from "./dom.js";
import { PARTITIONS, SUBMIT } from "./documents.js";

const NUMBERS = ["timeLimitMinutes", "cpusPerTask", "memoryMb"];

function field(name, label, control) {
  return h("div", { class: "field", "data-field": name },
    h("label", { for: `submit-${name}` }, label), control,
    h("p", { class: "field-error", id: `submit-${name}-error`, "aria-live": "polite" }));
}

export function mount(ctx) {
  const partition = h("select", { id: "submit-partition", name: "partition" }, h("option", { value: "" }, "default"));
  const form = h("form", { class: "submit", "aria-label": "Submit a job", novalidate: true },
    field("script", "Script", h("textarea", { id: "submit-script", name: "script", rows: "8", required: true }, "#!/bin/sh\nhostname\n")),
    field("name", "Name", h("input", { id: "submit-name", name: "name" })),
    field("partition", "Partition", partition),
    field("timeLimitMinutes", "Time limit (minutes)", h("input", { id: "submit-timeLimitMinutes", name: "timeLimitMinutes", inputmode: "numeric" })),
    field("cpusPerTask", "CPUs per task", h("input", { id: "submit-cpusPerTask", name: "cpusPerTask", inputmode: "numeric" })),
    field("memoryMb", "Memory (MB)", h("input", { id: "submit-memoryMb", name: "memoryMb", inputmode: "numeric" })),
    field("array", "Array (e.g. 0-9%2)", h("input", { id: "submit-array", name: "array" })),
    h("button", { type: "submit" }, "Submit"),
  );
  const outcome = h("div", { class: "outcome", "aria-live": "polite" });
  fill(ctx.main, h("h1", {}, "Submit a job"), form, outcome);
  ctx.api(PARTITIONS).then((data) => {
    for (const p of (data.cluster && data.cluster.partitions) || []) {
      partition.append(h("option", { value: p.name }, p.name + (p.isDefault ? " (default)" : "")));
    }
  }, (error) => fill(outcome, errorBox(error)));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    form.querySelectorAll(".field-error").forEach((p) => fill(p));
    form.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
    fill(outcome);
    const values = new FormData(form);
    const input = {};
    for (const [key, raw] of values.entries()) {
      const value = String(raw);
      if (!value.trim()) continue;
      if (NUMBERS.includes(key)) {
        const number = Number(value);
        if (!Number.isInteger(number)) {
          reject({ field: key, code: "INVALID_INPUT", message: "must be a whole number" });
          return;
        }
        input[key] = number;
      } else {
        input[key] = value;
      }
    }
    try {
      const data = await ctx.api(SUBMIT, { input });
      const payload = data.submitJob;
      if (payload.__typename === "JobSubmitted") {
        fill(outcome, "Submitted ", h("a", { href: jobHref(payload.job.displayId) }, `job ${payload.job.displayId}`),
          ` (${payload.job.state})`);
      } else {
        reject(payload);
      }
    } catch (error) {
      fill(outcome, errorBox(error));
    }
  });

  function reject(payload) {
    const place = payload.field && form.querySelector(`.field[data-field="${CSS.escape(payload.field)}"]`);
    if (place) {
      fill(place.querySelector(".field-error"), h("code", {}, payload.code), " ", payload.message);
      const control = place.querySelector("input, textarea, select");
      control.setAttribute("aria-invalid", "true");
      control.setAttribute("aria-describedby", `submit-${payload.field}-error`);
      control.focus();
    } else {
      fill(outcome, errorBox(payload));
    }
  }
  return { refresh() {}, dispose() {} };
}
