// One job: details, steps and efficiency (from accounting, when it has them), the output's tail
// (for an authenticated reader), and cancel/hold/release when the job is the viewer's own. A
// live update changes the page in place (morph): a button being pressed stays the same button.

import { debounce, errorBox, fill, h, minutes, morphChildren, when } from "./dom.js";
import { CANCEL, HOLD, JOB, JOB_STATE, RELEASE } from "./documents.js";

const ACTIONS = { cancel: CANCEL, hold: HOLD, release: RELEASE };

function details(job) {
  const rows = [
    ["Name", job.name], ["User", job.user], ["Account", job.account], ["State", job.state],
    ["Reason", job.reason], ["Partition", job.partition && job.partition.name],
    ["Nodes", `${job.numNodes} ${job.nodeList || ""}`], ["CPUs", job.numCpus],
    ["Submitted", when(job.submitTime)], ["Started", when(job.startTime)], ["Ends / ended", when(job.endTime)],
    ["Time limit", minutes(job.timeLimitMinutes)], ["Exit code", job.exitCode], ["QOS", job.qos],
    ["Priority", job.priority], ["Work directory", job.workDir], ["Output file", job.stdoutPath],
    ["Comment", job.comment],
  ];
  return h("dl", { class: "details" },
    rows.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .map(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k }, String(v))]));
}

function steps(job) {
  if (!job.steps.length && !job.efficiency) return null;
  const e = job.efficiency;
  return [
    h("h2", {}, "Steps and efficiency"),
    e ? h("p", {}, `CPU efficiency ${e.cpuEfficiencyPercent ?? "?"} %, memory efficiency ${e.memoryEfficiencyPercent ?? "?"} %`) : null,
    job.steps.length
      ? h("table", {},
          h("thead", {}, h("tr", {}, ["Step", "Name", "State", "Exit", "Elapsed s", "CPU s", "Max RSS"].map((t) => h("th", {}, t)))),
          h("tbody", {}, job.steps.map((s) => h("tr", { "data-key": s.id },
            h("td", {}, s.fullId), h("td", {}, s.name), h("td", {}, s.state), h("td", {}, s.exitCode ?? ""),
            h("td", {}, s.elapsedSeconds ?? ""), h("td", {}, s.cpuSeconds ?? ""), h("td", {}, s.maxRssBytes ?? "")))))
      : null,
  ];
}

export function mount(ctx, id) {
  // The status of the last action stays outside what updates redraw.
  const top = h("div", { class: "job-head" });
  const status = h("p", { class: "status", "aria-live": "polite" });
  const body = h("div", { class: "job-body" });
  const root = h("div", { class: "job" }, top, status, body);
  fill(ctx.main, root);
  let alive = true;
  let shown = null; // the job as last drawn: what the buttons act on
  const act = (name) => async () => {
    if (!shown) return;
    fill(status, `${name}…`);
    try {
      const done = await ctx.api(ACTIONS[name], { id: shown.displayId });
      fill(status, done.act.__typename === "JobActionDone"
        ? `${name}: done, now ${done.act.job.state}`
        : errorBox(done.act));
      load();
    } catch (error) {
      fill(status, errorBox(error));
    }
  };
  const buttons = h("div", { class: "actions" },
    h("button", { type: "button", "data-action": "cancel", onclick: act("cancel") }, "Cancel"),
    h("button", { type: "button", "data-action": "hold", onclick: act("hold") }, "Hold"),
    h("button", { type: "button", "data-action": "release", onclick: act("release") }, "Release"));
  const load = async () => {
    try {
      const { data, errors } = await ctx.apiPartial(JOB, { id, output: ctx.hasToken() });
      if (!alive) return;
      // Only the output may fail alone (no such file, not readable): anything else is the page's.
      const outputError = errors.find((e) => e.path.includes("output"));
      const other = errors.find((e) => !e.path.includes("output"));
      if (other) throw other;
      const job = data.cluster && data.cluster.job;
      if (!job) {
        shown = null;
        fill(top, h("h1", {}, `Job ${id}`), h("p", {}, "No such job, or not one you may see."));
        fill(body);
        return;
      }
      shown = job;
      const own = data.viewer.authenticated && data.viewer.user === job.user;
      const heading = h("h1", {}, `Job ${job.displayId} `,
        h("span", { class: `badge state-${job.state.toLowerCase()}`, "data-state": job.state }, job.state));
      morphChildren(top, own ? [heading, buttons] : [heading]);
      morphChildren(body, [details(job), steps(job),
        job.output ? [h("h2", {}, "Output (tail)"), h("pre", { class: "output" }, job.output.text)] : null,
        outputError ? [h("h2", {}, "Output"), errorBox(outputError)] : null].flat(Infinity).filter(Boolean));
      root.dataset.loaded = String(Date.now());
    } catch (error) {
      if (alive) fill(body, errorBox(error));
    }
  };
  const refresh = debounce(load, 250);
  load();
  const stop = ctx.live.subscribe(JOB_STATE, { id }, refresh, ctx.liveError);
  return {
    refresh,
    dispose() {
      alive = false;
      refresh.cancel();
      stop();
    },
  };
}
