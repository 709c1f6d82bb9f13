// The admin API client. The token lives in sessionStorage: it survives reloads of this tab and
// is forgotten when the tab closes. It is only ever sent in the Authorization header.

const KEY = "streamgate.admin-token";

export const token = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (v) => sessionStorage.setItem(KEY, v),
  clear: () => sessionStorage.removeItem(KEY),
};

/** APIError carries the server's {"error":{"code","message"}} or a network failure. */
export class APIError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function authHeaders(t = token.get()) {
  return { Authorization: "Bearer " + t };
}

/** request calls the admin API and returns the decoded JSON body (null for 204). */
export async function request(method, path, body, t = token.get()) {
  const init = { method, headers: { ...authHeaders(t), Accept: "application/json" }, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch("/admin/api" + path, init);
  } catch {
    throw new APIError(0, "network", "The server cannot be reached. Check the connection and try again.");
  }
  if (resp.status === 204) return null;
  let data = null;
  try {
    data = await resp.json();
  } catch { /* fall through with no body */ }
  if (!resp.ok) {
    const e = data?.error;
    throw new APIError(resp.status, e?.code || "http_" + resp.status, e?.message || `The server answered ${resp.status}.`);
  }
  return data;
}

export const api = {
  stats: (t) => request("GET", "/stats", undefined, t),
  tenant: (id) => request("GET", "/tenants/" + encodeURIComponent(id)),
  sessions: (id) => request("GET", "/tenants/" + encodeURIComponent(id) + "/sessions"),
  presence: (id) => request("GET", "/tenants/" + encodeURIComponent(id) + "/presence"),
  webhooks: (id) => request("GET", "/tenants/" + encodeURIComponent(id) + "/webhooks"),
  patchTenant: (id, body) => request("PATCH", "/tenants/" + encodeURIComponent(id), body),
  evict: (sessionID) => request("DELETE", "/sessions/" + encodeURIComponent(sessionID)),
};
