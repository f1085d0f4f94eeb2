// The live stream: GET /api/v1/events read with fetch() rather than EventSource, because
// EventSource cannot send the Authorization header and the token must not go in the URL.
// Reconnects with Last-Event-ID; a `resync` (or a reconnect that could not resume) tells the
// pages to reload what they show.

import { authHeaders } from './api.js';

const listeners = new Map();
let lastEventId = '';
let controller = null;
let statusElement = null;
let onUnauthorized = () => {};
let lastHeard = 0;

/** Calls `handler(data, name)` for every event named `name` ('*' for all); returns an unsubscribe function. */
export function on(name, handler) {
  if (!listeners.has(name)) listeners.set(name, new Set());
  listeners.get(name).add(handler);
  return () => listeners.get(name).delete(handler);
}

function emit(name, data) {
  for (const key of [name, '*']) {
    for (const handler of listeners.get(key) || []) {
      try { handler(data, name); } catch (error) { console.error('live handler', name, error); }
    }
  }
}

function status(text, state) {
  if (!statusElement) return;
  statusElement.textContent = text;
  statusElement.dataset.state = state;
}

/** Opens the stream (once); `element` shows its state in words. */
export function start(element, unauthorized) {
  statusElement = element;
  onUnauthorized = unauthorized;
  if (controller) return;
  controller = new AbortController();
  run(controller.signal);
}

/** Closes the stream (the token changed, or the page is left). */
export function stop() {
  if (controller) controller.abort();
  controller = null;
  lastEventId = '';
}

/** Milliseconds since the stream last said anything (heartbeats included). */
export function sinceHeard() {
  return lastHeard ? Date.now() - lastHeard : Infinity;
}

async function run(signal) {
  let delay = 500;
  let connectedBefore = false;
  while (!signal.aborted) {
    try {
      const headers = authHeaders({ Accept: 'text/event-stream' });
      if (lastEventId) headers['Last-Event-ID'] = lastEventId;
      const response = await fetch('/api/v1/events', { headers, signal, cache: 'no-store' });
      if (response.status === 401) {
        status('Not signed in', 'down');
        onUnauthorized();
        return;
      }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      delay = 500;
      await read(response.body, signal, connectedBefore);
      connectedBefore = true;
    } catch (error) {
      if (signal.aborted) return;
      console.warn('event stream:', error.message);
    }
    if (signal.aborted) return;
    status('Live updates interrupted — reconnecting…', 'down');
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 10000);
  }
}

async function read(body, signal, reconnect) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      lastHeard = Date.now();
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        dispatch(block, reconnect);
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function dispatch(block, reconnect) {
  let name = 'message';
  let id = null;
  const data = [];
  for (const line of block.split('\n')) {
    if (!line || line.startsWith(':')) continue; // a comment: the heartbeat
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id') id = value;
  }
  if (id) lastEventId = id;
  if (!data.length) return;
  let payload;
  try { payload = JSON.parse(data.join('\n')); } catch { return; }
  if (name === 'hello') {
    status(`Live: updates from ${payload.node}`, 'up');
    // After a reconnect that could not resume, what the page shows may be stale.
    if (reconnect && !payload.resumed) emit('resync', { reason: 'reconnected' });
  }
  emit(name, payload);
}
