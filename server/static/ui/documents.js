// Every GraphQL document the dashboard sends, each a plain string (no interpolation), so that
// server/ui_manifest.py can read them into manifest.json, the persisted-query manifest the server
// allows under SLURM_GRAPHQL_PERSISTED_ONLY. After changing one: scripts/ui-manifest.

export const VIEWER = `query Viewer { viewer { user authenticated } }`;

export const OVERVIEW = `query Overview {
  cluster {
    name slurmVersion
    stats { ...Figures }
    nodes { name state stateFlags reason reasonSetBy cpus cpusAllocated realMemoryMb allocatedMemoryMb }
    partitions { name state isDefault totalCpus totalNodes stats { ...Figures } nodes { name } }
  }
}
fragment Figures on Stats {
  pendingJobs pendingCpus
  jobsByState { state count }
  cpus { total allocated idle unavailable }
  memoryMb { total allocated }
  gpus { total allocated }
  nodesByState { state count }
}`;

export const NODE_EVENTS = `subscription NodeEvents { nodeEvents(initial: false) { kind name } }`;

export const JOB_EVENTS = `subscription JobEvents($filter: JobFilter) { jobEvents(filter: $filter, initial: false) { kind jobId } }`;

export const JOBS = `query Jobs($filter: JobFilter, $first: Int, $after: String, $orderBy: [JobOrder!]) {
  cluster {
    jobs(filter: $filter, first: $first, after: $after, orderBy: $orderBy) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node { id displayId name user state reason numCpus submitTime startTime timeLimitMinutes partition { name } } }
    }
  }
}`;

export const JOB = `query Job($id: String!, $output: Boolean!) {
  viewer { user authenticated }
  cluster {
    job(id: $id) {
      id displayId jobId name user account state reason partition { name } numNodes numCpus nodeList
      submitTime startTime endTime timeLimitMinutes exitCode workDir stdoutPath comment priority qos
      steps { id fullId name state exitCode elapsedSeconds cpuSeconds maxRssBytes }
      efficiency { elapsedSeconds cpuEfficiencyPercent memoryEfficiencyPercent maxRssBytes }
      output(tailBytes: 16384) @include(if: $output) { text truncated sizeBytes }
    }
  }
}`;

export const JOB_STATE = `subscription JobState($id: String!) { jobStateChanged(id: $id) { kind } }`;

export const CANCEL = `mutation Cancel($id: String!) { act: cancelJob(id: $id) { ...Outcome } }
fragment Outcome on JobActionPayload {
  __typename
  ... on JobActionDone { job { state } }
  ... on JobActionRejected { code message }
}`;

export const HOLD = `mutation Hold($id: String!) { act: holdJob(id: $id) { ...Outcome } }
fragment Outcome on JobActionPayload {
  __typename
  ... on JobActionDone { job { state } }
  ... on JobActionRejected { code message }
}`;

export const RELEASE = `mutation Release($id: String!) { act: releaseJob(id: $id) { ...Outcome } }
fragment Outcome on JobActionPayload {
  __typename
  ... on JobActionDone { job { state } }
  ... on JobActionRejected { code message }
}`;

export const PARTITIONS = `query Partitions { cluster { partitions { name isDefault } } }`;

export const SUBMIT = `mutation Submit($input: SubmitJobInput!) {
  submitJob(input: $input) {
    __typename
    ... on JobSubmitted { job { displayId state } }
    ... on SubmitRejected { code message field }
  }
}`;
