// Cluster overview: statistics, one heat map of nodes per partition (state as colour AND text,
// CPU allocation as a bar AND text), and the drained or down nodes with their reasons. One
// query; node and job events only say when to ask again.

import { debounce, errorBox, fill, h } from "./dom.js";

const STATS = `fragment Figures on Stats {
  pendingJobs pendingCpus
  jobsByState { state count }
  cpus { total allocated idle unavailable }
  memoryMb { total allocated }
  gpus { total allocated }
  nodesByState { state count }
}`;

const QUERY = `query Overview {
  cluster {
    name slurmVersion
    stats { ...Figures }
    nodes { name state stateFlags reason reasonSetBy cpus cpusAllocated realMemoryMb allocatedMemoryMb }
    partitions { name state isDefault totalCpus totalNodes stats { ...Figures } nodes { name } }
  }
}
${STATS}`;

const NODE_EVENTS = `subscription { nodeEvents(initial: false) { kind name } }`;
const JOB_EVENTS = `subscription { jobEvents(initial: false) { kind jobId } }`;

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
    { class: `node state-${node.state.toLowerCase()}`, tabindex: "0", title: label, "aria-label": label, "data-node": node.name },
    h("span", { class: "name" }, node.name),
    h("span", { class: "state" }, node.state),
    h("span", { class: "cpus" }, `${node.cpusAllocated}/${node.cpus} CPUs`),
    bar,
  );
}

function render(root, cluster) {
  const byName = new Map(cluster.nodes.map((n) => [n.name, n]));
  const troubled = cluster.nodes.filter((n) => n.reason);
  fill(
    root,
    h("h1", {}, `Cluster ${cluster.name}`, h("small", {}, ` Slurm ${cluster.slurmVersion}`)),
    figures(cluster.stats),
    h("h2", {}, "Partitions"),
    cluster.partitions.map((p) =>
      h(
        "section",
        { class: "partition", "data-partition": p.name },
        h("h3", {}, p.name, p.isDefault ? " (default)" : "", ` ${p.state}, ${p.totalNodes} nodes, ${p.totalCpus} CPUs`),
        figures(p.stats),
        h("ul", { class: "heatmap", "aria-label": `Nodes of ${p.name}` },
          p.nodes.map((n) => byName.get(n.name)).filter(Boolean).map(nodeCell)),
      ),
    ),
    h("h2", {}, "Drained and down nodes"),
    troubled.length
      ? h("table", { class: "reasons" },
          h("thead", {}, h("tr", {}, h("th", {}, "Node"), h("th", {}, "State"), h("th", {}, "Reason"), h("th", {}, "Set by"))),
          h("tbody", {}, troubled.map((n) =>
            h("tr", { "data-node": n.name }, h("td", {}, n.name), h("td", {}, n.state), h("td", { class: "reason" }, n.reason), h("td", {}, n.reasonSetBy || "")))))
      : h("p", {}, "None."),
  );
}

export function mount(ctx) {
  const root = h("div", { class: "overview", "aria-busy": "true" });
  fill(ctx.main, root);
  let alive = true;
  const load = async () => {
    try {
      const data = await ctx.api(QUERY);
      if (!alive) return;
      if (data.cluster) render(root, data.cluster);
      root.setAttribute("aria-busy", "false");
      root.dataset.loaded = String(Date.now());
    } catch (error) {
      if (alive) fill(root, errorBox(error));
    }
  };
  const refresh = debounce(load, 250);
  load();
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
