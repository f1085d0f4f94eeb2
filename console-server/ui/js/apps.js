// The apps page: one server-side page of apps at a time, filtered by state and name, with
// their actions. Live events update the rows shown in place; anything that may change which
// apps are on the page (a node gone, an app created or deleted) reloads the page, at most once
// a second.

import { get, post, del, routeExists } from './api.js';
import { badge, confirmAction, debounce, h, orDash, replace, time } from './dom.js';
import { createForm } from './app_form.js';
import * as live from './live.js';

const STATES = ['CREATED', 'STARTING', 'RUNNING', 'STOPPING', 'STOPPED', 'FAILED'];
const SIZES = [25, 50, 100, 200];

/** Actions every app has, and the states in which each is offered. */
const ACTIONS = [
  { path: 'start', label: 'Start', when: ['CREATED', 'STOPPED', 'FAILED'] },
  { path: 'stop', label: 'Stop', when: ['STARTING', 'RUNNING', 'FAILED'] },
  { path: 'restart', label: 'Restart', when: ['RUNNING', 'FAILED', 'STOPPED'] },
];
/**
 * Actions of `flink` apps, offered only when this console has the savepoint routes (issue 13):
 * a savepoint of the running job, a stop that cancels without a savepoint (Stop takes one), and
 * a start that restores nothing (Start restores the newest savepoint). `key` names the button
 * (`data-action`) where the route is shared; `body` is what the request asks beyond the action.
 */
export const FLINK_ACTIONS = [
  { path: 'savepoint', label: 'Savepoint', when: ['RUNNING'],
    hint: 'The job runs on; the savepoint is listed on the app’s page.' },
  { path: 'stop', key: 'stop-no-savepoint', label: 'Stop, no savepoint', body: { savepoint: false },
    when: ['RUNNING', 'FAILED'], hint: 'The job is cancelled without a savepoint (Stop takes one).' },
  { path: 'start', key: 'start-fresh', label: 'Start fresh', body: { restore: 'none' },
    when: ['CREATED', 'STOPPED', 'FAILED'], hint: 'The job starts from nothing (Start restores the newest savepoint).' },
];

/** Why the app has no owner, or the host its copy may run on; nothing when neither applies. */
function placementHint(placement) {
  const text = placement && (placement.unowned || (placement.host ? `on host ${placement.host}` : ''));
  return text ? h('div', { class: 'hint' }, text) : null;
}

/** Renders the page into `main` for the query `params`; returns a function that stops it. */
export function appsPage(main, params) {
  const query = {
    page: Math.max(1, Number(params.get('page')) || 1),
    size: SIZES.includes(Number(params.get('size'))) ? Number(params.get('size')) : 50,
    state: STATES.includes(params.get('state')) ? params.get('state') : '',
    name: params.get('name') || '',
  };
  const rows = new Map();
  const tasks = new Map();
  const errorBox = h('p', { class: 'error', role: 'alert', hidden: true });
  const taskBox = h('ul', { class: 'tasks-feed', id: 'task-feed', 'aria-live': 'polite', 'aria-label': 'Actions you started' });
  const tbody = h('tbody', {});
  const summary = h('p', { id: 'apps-summary', class: 'hint', role: 'status' }, 'Loading…');
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of apps' });
  let flinkRoutes = null;

  const stateSelect = h('select', { id: 'filter-state', name: 'state' },
    h('option', { value: '' }, 'any state'),
    STATES.map((s) => h('option', { value: s, selected: s === query.state }, s)));
  const nameInput = h('input', { id: 'filter-name', name: 'name', type: 'search', value: query.name, placeholder: 'part of a name', autocomplete: 'off' });
  const sizeSelect = h('select', { id: 'filter-size', name: 'size' },
    SIZES.map((n) => h('option', { value: n, selected: n === query.size }, `${n} per page`)));
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter apps',
    onsubmit: (event) => { event.preventDefault(); go({ page: 1 }); } },
  h('label', { for: 'filter-state' }, 'State'), stateSelect,
  h('label', { for: 'filter-name' }, 'Name contains'), nameInput,
  h('label', { for: 'filter-size' }, 'Show'), sizeSelect,
  h('button', { type: 'submit' }, 'Filter'));
  stateSelect.addEventListener('change', () => go({ page: 1 }));
  sizeSelect.addEventListener('change', () => go({ page: 1 }));

  function go(change) {
    const next = { ...query, state: stateSelect.value, name: nameInput.value.trim(), size: Number(sizeSelect.value), ...change };
    const search = new URLSearchParams();
    for (const key of ['page', 'size', 'state', 'name']) {
      if (next[key] && !(key === 'page' && next[key] === 1) && !(key === 'size' && next[key] === 50)) search.set(key, next[key]);
    }
    location.hash = `#/apps${search.toString() ? '?' + search : ''}`;
  }

  const table = h('table', { class: 'grid', id: 'apps' },
    h('caption', { class: 'visually-hidden' }, 'Apps'),
    h('thead', {}, h('tr', {}, ['Id', 'Name', 'Executor', 'State', 'Owner', 'Adopted by', 'Last error', 'Updated', 'Actions']
      .map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  const form = createForm(() => load());
  replace(main,
    h('div', { class: 'title-row' }, h('h1', {}, 'Apps'), form.opener),
    form.element, errorBox, filters, summary, taskBox,
    h('div', { class: 'table-wrap' }, table), pager);

  async function load() {
    const search = new URLSearchParams({ page: query.page, size: query.size });
    if (query.state) search.set('state', query.state);
    if (query.name) search.set('name', query.name);
    try {
      const page = await get(`/api/v1/apps?${search}`);
      errorBox.hidden = true;
      if (flinkRoutes === null && page.items.some((a) => a.executor === 'flink')) {
        const flinkApp = page.items.find((a) => a.executor === 'flink');
        flinkRoutes = await routeExists(`/api/v1/apps/${flinkApp.id}/savepoints`);
      }
      draw(page);
    } catch (error) {
      errorBox.textContent = `Cannot list the apps: ${error.message}`;
      errorBox.hidden = false;
    }
  }

  function draw(page) {
    rows.clear();
    replace(tbody, page.items.map((app) => {
      const row = h('tr', { dataset: { app: app.id } });
      fillRow(row, app);
      rows.set(app.id, row);
      return row;
    }));
    if (!page.items.length) {
      replace(tbody, h('tr', {}, h('td', { colspan: 9, class: 'muted' },
        page.total ? 'No apps on this page.' : 'No apps match. Create one with “New app”.')));
    }
    const pages = Math.max(1, Math.ceil(page.total / query.size));
    const first = page.total ? (query.page - 1) * query.size + 1 : 0;
    summary.textContent = `${page.total} app${page.total === 1 ? '' : 's'}` +
      `${query.state || query.name ? (page.total === 1 ? ' matches the filter' : ' match the filter') : ''}; showing ${first}–${first + page.items.length - (page.items.length ? 1 : 0)}, page ${query.page} of ${pages}.`;
    replace(pager,
      h('button', { type: 'button', class: 'secondary', disabled: query.page <= 1, onclick: () => go({ page: query.page - 1 }) }, '← Previous'),
      h('span', {}, ` Page ${query.page} of ${pages} `),
      h('button', { type: 'button', class: 'secondary', disabled: query.page >= pages, onclick: () => go({ page: query.page + 1 }) }, 'Next →'));
  }

  function fillRow(row, app) {
    const actions = ACTIONS.concat(app.executor === 'flink' && flinkRoutes ? FLINK_ACTIONS : [])
      .filter((a) => a.when.includes(app.state));
    replace(row,
      h('td', { class: 'num' }, String(app.id)),
      h('th', { scope: 'row' }, h('a', { href: `#/apps/${app.id}` }, app.name)),
      h('td', {}, app.executor),
      h('td', {}, badge(app.state), placementHint(app.placement)),
      h('td', {}, orDash(app.owner)),
      h('td', {}, orDash(app.adopted_by)),
      h('td', { class: 'error-text' }, app.last_error ? h('span', { title: app.last_error }, app.last_error) : orDash(null)),
      h('td', {}, time(app.updated_at)),
      h('td', { class: 'actions' },
        actions.map((a) => h('button', { type: 'button', class: 'small', dataset: { action: a.key || a.path }, title: a.hint,
          'aria-label': `${a.label} ${app.name}`, onclick: () => act(app, a) }, a.label)),
        ['CREATED', 'STOPPED', 'FAILED'].includes(app.state)
          ? h('button', { type: 'button', class: 'small danger', dataset: { action: 'delete' },
            'aria-label': `Delete ${app.name}`, onclick: () => remove(app) }, 'Delete') : null));
  }

  async function act(app, action) {
    const ok = await confirmAction(`${action.label} ${app.name}?`,
      `${action.label} app ${app.id} “${app.name}” (${app.state} now). ${action.hint ? action.hint + ' ' : ''}Its owner runs the action; the resulting task is shown above the table.`,
      action.label);
    if (!ok) return;
    const item = h('li', {}, `${action.label} ${app.name}: submitting…`);
    taskBox.prepend(item);
    try {
      const accepted = await post(`/api/v1/apps/${app.id}/${action.path}`, action.body);
      tasks.set(accepted.task_id, { item, app, action });
      showTask(accepted.task_id, { status: accepted.status });
      // The stream may have told of the task before this answer came.
      get(`/api/v1/tasks/${accepted.task_id}`).then((task) => showTask(task.id, task), () => {});
    } catch (error) {
      replace(item, h('strong', {}, `${action.label} ${app.name} refused: `), error.message);
      item.className = 'failed';
    }
    while (taskBox.children.length > 5) taskBox.lastChild.remove();
  }

  function showTask(id, task) {
    const tracked = tasks.get(id);
    if (!tracked) return;
    const done = task.status === 'SUCCEEDED' || task.status === 'FAILED';
    replace(tracked.item, `${tracked.action.label} ${tracked.app.name}: task ${id} `, badge(task.status),
      task.owner ? ` on ${task.owner}` : '', task.error ? h('span', { class: 'error-text' }, ` — ${task.error}`) : '');
    tracked.item.className = task.status.toLowerCase();
    tracked.item.dataset.task = id;
    if (done) tracked.item.dataset.done = 'true';
  }

  async function remove(app) {
    const ok = await confirmAction(`Delete ${app.name}?`, `Delete app ${app.id} “${app.name}”. Its finished tasks stay readable.`, 'Delete');
    if (!ok) return;
    try {
      await del(`/api/v1/apps/${app.id}`);
      load();
    } catch (error) {
      errorBox.textContent = `Cannot delete ${app.name}: ${error.message}`;
      errorBox.hidden = false;
    }
  }

  const reload = debounce(load, 1000);
  const offs = [
    live.on('app_changed', (app) => {
      const row = rows.get(app.id);
      if (row) fillRow(row, app);
      else if (!query.state || app.state === query.state) reload();
      if (row && query.state && app.state !== query.state) reload();
    }),
    live.on('app_deleted', ({ id }) => { if (rows.has(id)) reload(); }),
    live.on('task_changed', (task) => showTask(task.id, task)),
    live.on('node_left', reload),
    live.on('node_joined', reload),
    live.on('resync', load),
  ];
  load();
  return () => { offs.forEach((off) => off()); reload.cancel(); };
}
