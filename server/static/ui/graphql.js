// GraphQL over HTTP: one POST per operation, the token in a header, errors typed by their code.

import { authHeaders } from "./auth.js";

export class RequestError extends Error {
  constructor(code, message, data = null) {
    super(message);
    this.code = code;
    this.data = data;
  }
}

// The data of an answer; a RequestError (code, message) for the first error, if any.
export async function request(endpoint, query, variables = {}) {
  const { data, errors } = await requestPartial(endpoint, query, variables);
  if (errors.length) throw errors[0];
  return data;
}

// The data and the errors of an answer, for a view that can show what did resolve (a job whose
// output file cannot be read is still a job); throws only when there is no data at all.
export async function requestPartial(endpoint, query, variables = {}) {
  let response;
  try {
    response = await fetch(endpoint, {
      method: "POST",
      credentials: "omit",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/graphql-response+json, application/json",
        ...authHeaders(),
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new RequestError("NETWORK_ERROR", "the API cannot be reached");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new RequestError(`HTTP_${response.status}`, response.statusText || "not a GraphQL answer");
  }
  const errors = (Array.isArray(body.errors) ? body.errors : []).map((error) => {
    const code = (error && error.extensions && error.extensions.code) || `HTTP_${response.status}`;
    const found = new RequestError(String(code), String((error && error.message) || "request failed"));
    found.path = (error && error.path) || [];
    return found;
  });
  if (!body.data) {
    throw errors[0] || new RequestError(`HTTP_${response.status}`, "no data in the answer");
  }
  return { data: body.data, errors };
}
