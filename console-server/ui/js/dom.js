// Small helpers to build the page without innerHTML (nothing from the server is parsed as HTML).

/** Creates an element: h('a', {href: '#/x', class: 'y'}, 'text', child, ...). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `element`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

/** A date and time for a timestamp in milliseconds since the epoch, '' for none. */
export function when(ms) {
  if (ms === undefined || ms === null) return '';
  const date = new Date(ms);
  return date.toLocaleString(undefined, {
    year: 'numeric', month: '2-digit', day: '2-digit',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** A <time> element showing `ms` with the full ISO time as its machine-readable value. */
export function time(ms) {
  if (ms === undefined || ms === null) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: new Date(ms).toISOString(), title: new Date(ms).toISOString() }, when(ms));
}

/** "3 d 4 h", "5 min 2 s": a duration for people. */
export function duration(ms) {
  if (ms < 0 || !Number.isFinite(ms)) return '—';
  const s = Math.floor(ms / 1000);
  const parts = [[Math.floor(s / 86400), 'd'], [Math.floor(s / 3600) % 24, 'h'],
    [Math.floor(s / 60) % 60, 'min'], [s % 60, 's']];
  const first = parts.findIndex(([n]) => n > 0);
  if (first < 0) return '0 s';
  return parts.slice(first, first + 2).filter(([n]) => n > 0).map(([n, u]) => `${n} ${u}`).join(' ');
}

/** The state of an app or a task as text, with a shape and colour that repeat it. */
export function badge(state) {
  const name = String(state || 'UNKNOWN');
  return h('span', { class: `badge s-${name.toLowerCase()}` }, name);
}

/** Text, or a muted dash for an empty value. */
export function orDash(value) {
  return value === undefined || value === null || value === '' ? h('span', { class: 'muted', 'aria-label': 'none' }, '—') : String(value);
}

/** Calls `fn` at most once per `ms`, after the last call of a burst. */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => { timer = null; fn(...args); }, ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/** A labelled description list of [label, value] pairs. */
export function facts(pairs, label) {
  return h('dl', { class: 'facts', 'aria-label': label },
    pairs.filter(Boolean).map(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
}

/** Asks for confirmation in the page's dialog; resolves to true when confirmed. */
export function confirmAction(title, text, okLabel) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = okLabel;
  dialog.returnValue = 'cancel';
  dialog.showModal();
  document.getElementById('confirm-ok').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}
