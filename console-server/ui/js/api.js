// Calls to the console's HTTP API, with the bearer token when one is kept for this tab.

const TOKEN_KEY = 'console.token';
let unauthorized = () => {};

/** The token kept for this tab (sessionStorage), or ''. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** What to do when the API answers 401 (the page asks for the token). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

/** Headers of every call: the bearer token when there is one. */
export function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  return headers;
}

/** An error answer of the API: `{"error": {"code", "message"}}` with its status. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API; resolves to the JSON body (null for 204), rejects with an ApiError. */
export async function api(method, path, body) {
  const init = { method, headers: authHeaders({ Accept: 'application/json' }), cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, 'unreachable', `the console did not answer (${error.message})`);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (response.ok) return json;
  const error = (json && json.error) || {};
  const failure = new ApiError(response.status, error.code || 'http_' + response.status,
    error.message || `${response.status} ${response.statusText}`);
  if (response.status === 401) unauthorized(failure);
  throw failure;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
export const del = (path) => api('DELETE', path);

/** Whether an optional route exists on this console (a 404 "no such route" says it does not). */
const routeCache = new Map();
export async function routeExists(path) {
  if (!routeCache.has(path)) {
    routeCache.set(path, get(path).then(() => true, (error) =>
      !(error.status === 404 && /no such route/.test(error.message)) && error.status !== 405));
  }
  return routeCache.get(path);
}
