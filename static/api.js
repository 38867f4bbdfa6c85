// The only module that knows credentials and the API's error shape {code, error, message}.
// The credential lives in sessionStorage only: never a cookie, never a URL.

const STORE = "resellerd.credential";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function credential() {
  const raw = sessionStorage.getItem(STORE);
  return raw ? JSON.parse(raw) : null;
}

export function remember(cred) {
  sessionStorage.setItem(STORE, JSON.stringify(cred));
}

export function forget() {
  sessionStorage.removeItem(STORE);
}

function authorization(cred) {
  return cred.kind === "basic" ? `Basic ${btoa(`${cred.keyId}:${cred.key}`)}` : `Bearer ${cred.token}`;
}

/** Calls /api/v1 + path. Resolves to the parsed body (null for 204); rejects with ApiError. */
export async function api(method, path, body, { contentType, withHeaders, cred } = {}) {
  const c = cred || credential();
  const headers = { Accept: "application/json" };
  if (c) headers.Authorization = authorization(c);
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = contentType || "application/json";
    payload = contentType ? body : JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError(0, "network", "The server could not be reached.");
  }
  if (!resp.ok) {
    let err = {};
    try { err = await resp.json(); } catch { /* not JSON */ }
    const failure = new ApiError(resp.status, err.error || "error", err.message || resp.statusText);
    if (resp.status === 401 && !cred) {
      forget();
      window.dispatchEvent(new CustomEvent("signed-out", { detail: failure.message }));
    }
    throw failure;
  }
  if (resp.status === 204) return withHeaders ? { data: null, headers: resp.headers } : null;
  const type = resp.headers.get("content-type") || "";
  const data = type.includes("json") ? await resp.json() : await resp.text();
  return withHeaders ? { data, headers: resp.headers } : data;
}

/** One page of a list endpoint: {items, total}. */
export async function page(path, number, perPage = 20) {
  const sep = path.includes("?") ? "&" : "?";
  const { data, headers } = await api("GET", `${path}${sep}page=${number}&per_page=${perPage}`, undefined, { withHeaders: true });
  const total = Number(headers.get("x-total-count") ?? data.length);
  return { items: data, total };
}

/** Sends a large body (a file, a zip) with upload progress: `onProgress(sentBytes)` as it
 * goes. Resolves to the parsed JSON answer; rejects with ApiError, as `api` does. */
export function upload(method, path, body, contentType, onProgress) {
  const c = credential();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, `/api/v1${path}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("Content-Type", contentType);
    if (c) xhr.setRequestHeader("Authorization", authorization(c));
    xhr.upload.onprogress = e => onProgress?.(e.loaded);
    xhr.onerror = () => reject(new ApiError(0, "network", "The server could not be reached."));
    xhr.onload = () => {
      let data = null;
      try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) return resolve(data);
      reject(new ApiError(xhr.status, data?.error || "error", data?.message || xhr.statusText));
    };
    xhr.send(body);
  });
}

/** Follows a server-sent event stream (a build's log): `onEvent(type, data)` for each event as
 * it comes. Resolves when the stream ends; rejects with ApiError, as `api` does. (EventSource
 * cannot send the Authorization header, so this reads the stream itself.) */
export async function follow(path, onEvent, signal) {
  const c = credential();
  const headers = { Accept: "text/event-stream" };
  if (c) headers.Authorization = authorization(c);
  const resp = await fetch(`/api/v1${path}`, { headers, signal });
  if (!resp.ok) {
    let err = {};
    try { err = await resp.json(); } catch { /* not JSON */ }
    throw new ApiError(resp.status, err.error || "error", err.message || resp.statusText);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let type = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) type = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      onEvent(type, data ? JSON.parse(data) : null);
    }
  }
}
