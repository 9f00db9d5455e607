// Cluster overview: statistics, one heat map of nodes per partition (state as colour AND text,
// CPU allocation as a bar AND text), and the drained or down nodes with their reasons. One
// query; node and job events only say when to ask again, and an update changes the page in
// place (morph), so a focused node keeps its focus.

import { debounce, errorBox, fill, h, morphChildren } from "./dom.js";
import { JOB_EVENTS, NODE_EVENTS, OVERVIEW } from "./documents.js";

function figures(stats) {
  const jobs = stats.jobsByState.map((s) => `${s.state} ${s.count}`).join(", ") || "no jobs";
  const nodes = stats.nodesByState.map((s) => `${s.state} ${s.count}`).join(", ");
  const rows = [
    ["CPUs", `${stats.cpus.allocated} of ${stats.cpus.total} allocated, ${stats.cpus.idle} idle`],
    ["Memory", `${stats.memoryMb.allocated} of ${stats.memoryMb.total} MB allocated`],
    ["GPUs", `${stats.gpus.allocated} of ${stats.gpus.total} allocated`],
    ["Jobs", jobs],
    ["Pending", `${stats.pendingJobs} jobs asking for ${stats.pendingCpus} CPUs`],
    ["Nodes", nodes],
  ];
  return h("dl", { class: "stats" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function nodeCell(node) {
  const share = node.cpus ? node.cpusAllocated / node.cpus : 0;
  const bar = h("span", { class: "bar" });
  bar.style.width = `${Math.round(share * 100)}%`; // CSSOM, which the CSP allows
  const flags = node.stateFlags.length ? ` (${node.stateFlags.join(", ")})` : "";
  const label = `${node.name}: ${node.state}${flags}, ${node.cpusAllocated}/${node.cpus} CPUs`;
  return h(
    "li",
    { class: `node state-${node.state.toLowerCase()}`, tabindex: "0", title: label, "aria-label": label,
      "data-node": node.name, "data-key": node.name },
    h("span", { class: "name" }, node.name),
    h("span", { class: "state" }, node.state),
    h("span", { class: "cpus" }, `${node.cpusAllocated}/${node.cpus} CPUs`),
    bar,
  );
}

function view(cluster) {
  const byName = new Map(cluster.nodes.map((n) => [n.name, n]));
  const troubled = cluster.nodes.filter((n) => n.reason);
  return [
    h("h1", {}, `Cluster ${cluster.name}`, h("small", {}, ` Slurm ${cluster.slurmVersion}`)),
    figures(cluster.stats),
    h("h2", {}, "Partitions"),
    cluster.partitions.map((p) =>
      h(
        "section",
        { class: "partition", "data-partition": p.name, "data-key": `partition:${p.name}` },
        h("h3", {}, p.name, p.isDefault ? " (default)" : "", ` ${p.state}, ${p.totalNodes} nodes, ${p.totalCpus} CPUs`),
        figures(p.stats),
        h("ul", { class: "heatmap", "aria-label": `Nodes of ${p.name}` },
          p.nodes.map((n) => byName.get(n.name)).filter(Boolean).map(nodeCell)),
      ),
    ),
    h("h2", {}, "Drained and down nodes"),
    troubled.length
      ? h("table", { class: "reasons" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Node"), h("th", { scope: "col" }, "State"),
            h("th", { scope: "col" }, "Reason"), h("th", { scope: "col" }, "Set by"))),
          h("tbody", {}, troubled.map((n) =>
            h("tr", { "data-node": n.name, "data-key": n.name }, h("td", {}, n.name), h("td", {}, n.state),
              h("td", { class: "reason" }, n.reason), h("td", {}, n.reasonSetBy || "")))))
      : h("p", {}, "None."),
  ].flat();
}

export function mount(ctx) {
  const root = h("div", { class: "overview", "aria-busy": "true" });
  fill(ctx.main, root);
  let alive = true;
  const load = async () => {
    try {
      const data = await ctx.api(OVERVIEW);
      if (!alive) return;
      if (data.cluster) morphChildren(root, view(data.cluster));
      root.setAttribute("aria-busy", "false");
      root.dataset.loaded = String(Date.now());
    } catch (error) {
      if (alive) fill(root, errorBox(error));
    }
  };
  const refresh = debounce(load, 250);
  load();
  // Subscribed at once: the server's poller joins the fetch the first query started.
  const stops = [
    ctx.live.subscribe(NODE_EVENTS, {}, refresh, ctx.liveError),
    ctx.live.subscribe(JOB_EVENTS, {}, refresh, ctx.liveError),
  ];
  return {
    refresh,
    dispose() {
      alive = false;
      refresh.cancel();
      stops.forEach((stop) => stop());
    },
  };
}
