// The job table: filters, sorting, cursor paging (50 a page), live through jobEvents with the
// same filter. Only the shown page is ever downloaded. A live update changes rows in place,
// keyed by job (morph): the link under the pointer or holding the focus stays where it is.

import { debounce, errorBox, fill, h, jobHref, minutes, morphChildren, when } from "./dom.js";
import { JOB_EVENTS, JOBS } from "./documents.js";

const PAGE = 50;
const STATES = ["PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT"];
const ORDERS = ["ID", "SUBMIT_TIME", "START_TIME", "PRIORITY", "END_TIME", "NAME", "USER"];

function words(text) {
  const list = text.split(/[\s,]+/).filter(Boolean);
  return list.length ? list : null;
}

function select(name, label, options, value) {
  return h("label", {}, label, " ",
    h("select", { name }, options.map(([v, text]) => h("option", { value: v, selected: v === value }, text))));
}

export function mount(ctx) {
  const state = { filter: {}, orderField: "ID", direction: "DESC", cursors: [null] };
  const form = h("form", { class: "filters", "aria-label": "Filter jobs" },
    select("state", "State", [["", "any"], ...STATES.map((s) => [s, s])], ""),
    h("label", {}, "User ", h("input", { name: "user", size: "10" })),
    h("label", {}, "Partition ", h("input", { name: "partition", size: "10" })),
    h("label", {}, "Name ", h("input", { name: "name", size: "12" })),
    select("order", "Sort by", ORDERS.map((o) => [o, o.toLowerCase().replace("_", " ")]), "ID"),
    select("direction", "", [["DESC", "descending"], ["ASC", "ascending"]], "DESC"),
    h("button", { type: "submit" }, "Apply"),
  );
  const count = h("p", { class: "count", "aria-live": "polite" });
  const table = h("div", { class: "table" });
  const prev = h("button", { type: "button", disabled: true }, "Previous page");
  const next = h("button", { type: "button", disabled: true }, "Next page");
  fill(ctx.main, h("h1", {}, "Jobs"), form, count, table, h("nav", { class: "pager" }, prev, next));

  let alive = true;
  let stop = () => {};
  const load = async () => {
    const page = state.cursors.length - 1;
    try {
      const data = await ctx.api(JOBS, {
        filter: state.filter,
        first: PAGE,
        after: state.cursors[page],
        orderBy: [{ field: state.orderField, direction: state.direction }],
      });
      if (!alive || !data.cluster) return;
      const jobs = data.cluster.jobs;
      state.next = jobs.pageInfo.hasNextPage ? jobs.pageInfo.endCursor : null;
      next.disabled = !state.next;
      prev.disabled = page === 0;
      fill(count, `${jobs.totalCount} jobs, page ${page + 1}`);
      morphChildren(table, [rows(jobs.edges.map((e) => e.node))]);
      table.dataset.loaded = String(Date.now());
    } catch (error) {
      if (alive) fill(table, errorBox(error));
    }
  };
  const refresh = debounce(load, 250);
  const follow = () => {
    stop();
    stop = ctx.live.subscribe(JOB_EVENTS, { filter: state.filter }, refresh, ctx.liveError);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = new FormData(form);
    const filter = {};
    if (values.get("state")) filter.states = [values.get("state")];
    for (const [field, key] of [["users", "user"], ["partitions", "partition"], ["names", "name"]]) {
      const list = words(String(values.get(key) || ""));
      if (list) filter[field] = list;
    }
    state.filter = filter;
    state.orderField = String(values.get("order"));
    state.direction = String(values.get("direction"));
    state.cursors = [null];
    load();
    follow();
  });
  next.addEventListener("click", () => {
    if (state.next) state.cursors.push(state.next);
    load();
  });
  prev.addEventListener("click", () => {
    if (state.cursors.length > 1) state.cursors.pop();
    load();
  });
  load();
  follow();
  return {
    refresh,
    dispose() {
      alive = false;
      refresh.cancel();
      stop();
    },
  };
}

function rows(jobs) {
  const head = ["Job", "Name", "User", "State", "Partition", "CPUs", "Submitted", "Started", "Time limit"];
  return h("table", { class: "jobs", "aria-label": "Jobs" },
    h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, jobs.map((job) =>
      h("tr", { "data-job": job.displayId, "data-state": job.state, "data-key": job.id },
        h("td", {}, h("a", { href: jobHref(job.displayId) }, job.displayId)),
        h("td", { class: "name" }, job.name),
        h("td", {}, job.user),
        h("td", {}, h("span", { class: `badge state-${job.state.toLowerCase()}` }, job.state),
          job.reason && job.reason !== "None" ? ` ${job.reason}` : ""),
        h("td", {}, job.partition ? job.partition.name : ""),
        h("td", {}, job.numCpus),
        h("td", {}, when(job.submitTime)),
        h("td", {}, when(job.startTime)),
        h("td", {}, minutes(job.timeLimitMinutes)),
      ))),
  );
}
