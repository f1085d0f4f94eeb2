// One app: its fields, spec and handle, its task history, the tail of its log, and its
// savepoints where the console has them (flink apps).

import { get, routeExists } from './api.js';
import { badge, debounce, facts, h, orDash, replace, time } from './dom.js';
import * as live from './live.js';

const HISTORY_SIZE = 20;

/** Renders app `id` into `main`; returns a function that stops its live updates. */
export function detailPage(main, id) {
  const head = h('div', {});
  const factsBox = h('section', { class: 'card', 'aria-labelledby': 'facts-title' });
  const specBox = h('section', { class: 'card', 'aria-labelledby': 'spec-title' });
  const tasksBox = h('section', { class: 'card', 'aria-labelledby': 'tasks-title' });
  const logBox = h('section', { class: 'card', 'aria-labelledby': 'log-title' });
  const savepointsBox = h('section', { class: 'card', 'aria-labelledby': 'savepoints-title', hidden: true });
  const errorBox = h('p', { class: 'error', role: 'alert', hidden: true });
  replace(main, h('p', {}, h('a', { href: '#/apps' }, '← All apps')), head, errorBox,
    h('div', { class: 'columns' }, factsBox, specBox), tasksBox, logBox, savepointsBox);
  let app = null;

  const tailInput = h('input', { id: 'log-tail', type: 'number', min: 1, max: 5000, value: 100, inputmode: 'numeric' });
  const logText = h('pre', { id: 'log', class: 'log', tabindex: 0, 'aria-label': 'Log tail' });
  const logNote = h('p', { class: 'hint', role: 'status' });
  replace(logBox, h('h2', { id: 'log-title' }, 'Log'),
    h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); loadLog(); } },
      h('label', { for: 'log-tail' }, 'Last lines'), tailInput,
      h('button', { type: 'submit', class: 'secondary' }, 'Refresh log')),
    logNote, logText);

  async function load() {
    try {
      app = await get(`/api/v1/apps/${id}`);
      errorBox.hidden = true;
      drawApp();
    } catch (error) {
      errorBox.textContent = error.status === 404 ? `There is no app ${id} (deleted?).` : `Cannot read app ${id}: ${error.message}`;
      errorBox.hidden = false;
    }
  }

  function drawApp() {
    replace(head, h('h1', {}, `${app.name} `, h('span', { class: 'muted' }, `app ${app.id}`), ' ', badge(app.state)));
    const known = new Set(['id', 'name', 'executor', 'spec', 'state', 'owner', 'adopted_by', 'last_error',
      'handle', 'version', 'created_at', 'updated_at']);
    // Fields this page does not know yet (placement, weight, ...) are shown as they come.
    const extra = Object.entries(app).filter(([key]) => !known.has(key))
      .map(([key, value]) => [key.replace(/_/g, ' '), typeof value === 'object' ? JSON.stringify(value) : orDash(value)]);
    replace(factsBox, h('h2', { id: 'facts-title' }, 'State'), facts([
      ['State', badge(app.state)],
      ['Executor', app.executor],
      ['Owner', orDash(app.owner)],
      ['Adopted by', orDash(app.adopted_by)],
      ['Last error', app.last_error ? h('span', { class: 'error-text' }, app.last_error) : orDash(null)],
      ['Created', time(app.created_at)],
      ['Updated', time(app.updated_at)],
      ['Version', String(app.version)],
      ...extra,
    ], 'App state'));
    replace(specBox, h('h2', { id: 'spec-title' }, 'Spec and handle'),
      h('h3', {}, 'Spec'), h('pre', { class: 'json', id: 'spec' }, JSON.stringify(app.spec, null, 2)),
      h('h3', {}, 'Handle'), app.handle ? h('pre', { class: 'json', id: 'handle' }, JSON.stringify(app.handle, null, 2))
        : h('p', { class: 'muted' }, 'None: the app is not running.'));
  }

  async function loadTasks() {
    try {
      const page = await get(`/api/v1/apps/${id}/tasks?size=${HISTORY_SIZE}`);
      replace(tasksBox, h('h2', { id: 'tasks-title' }, `Task history (${page.total})`),
        page.items.length ? h('table', { class: 'grid', id: 'task-history' },
          h('thead', {}, h('tr', {}, ['Task', 'Action', 'Status', 'Attempts', 'Owner', 'Submitted', 'Started', 'Finished', 'Error']
            .map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, page.items.map((t) => h('tr', { dataset: { task: t.id } },
            h('td', { class: 'num' }, String(t.id)), h('td', {}, t.action), h('td', {}, badge(t.status)),
            h('td', { class: 'num' }, String(t.attempts)), h('td', {}, orDash(t.owner)),
            h('td', {}, time(t.created_at)), h('td', {}, time(t.started_at)), h('td', {}, time(t.finished_at)),
            h('td', { class: 'error-text' }, orDash(t.error))))))
          : h('p', { class: 'muted' }, 'No tasks yet.'),
        page.total > HISTORY_SIZE ? h('p', { class: 'hint' }, `The newest ${HISTORY_SIZE} are shown.`) : null);
    } catch (error) {
      replace(tasksBox, h('h2', { id: 'tasks-title' }, 'Task history'), h('p', { class: 'error' }, error.message));
    }
  }

  async function loadLog() {
    const tail = Number(tailInput.value) || 100;
    try {
      const log = await get(`/api/v1/apps/${id}/log?tail=${tail}`);
      logText.textContent = log.lines.join('\n') || '(empty)';
      logNote.textContent = `${log.lines.length} line${log.lines.length === 1 ? '' : 's'} read by ${log.node}${log.truncated ? '; older lines not shown' : ''}.`;
      logText.scrollTop = logText.scrollHeight;
    } catch (error) {
      logText.textContent = '';
      logNote.textContent = error.message;
    }
  }

  async function loadSavepoints() {
    if (!app || app.executor !== 'flink') return;
    const path = `/api/v1/apps/${id}/savepoints`;
    if (!(await routeExists(path))) return;
    try {
      const items = await get(path);
      savepointsBox.hidden = false;
      replace(savepointsBox, h('h2', { id: 'savepoints-title' }, `Savepoints (${items.length})`),
        items.length ? h('table', { class: 'grid', id: 'savepoints' },
          h('thead', {}, h('tr', {}, ['Taken', 'Kind', 'Job', 'Location'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, items.map((s) => h('tr', { dataset: { kind: s.kind } },
            h('td', {}, time(s.created_at)), h('td', {}, s.kind), h('td', {}, h('code', {}, orDash(s.job_id))),
            h('td', {}, h('code', {}, s.location))))))
          : h('p', { class: 'muted' }, 'No savepoints yet.'),
        h('p', { class: 'hint' }, 'Newest first. A start restores the newest; only the newest few are kept.'));
    } catch (error) {
      savepointsBox.hidden = false;
      replace(savepointsBox, h('h2', { id: 'savepoints-title' }, 'Savepoints'), h('p', { class: 'error' }, error.message));
    }
  }

  const laterTasks = debounce(loadTasks, 500);
  const laterLog = debounce(loadLog, 1500);
  const laterSavepoints = debounce(loadSavepoints, 500);
  const offs = [
    live.on('app_changed', (changed) => { if (changed.id === id) { app = changed; drawApp(); laterLog(); } }),
    live.on('task_changed', (task) => {
      if (task.app_id !== id) return;
      laterTasks();
      // A stop or savepoint that finished may have added one.
      if (task.status === 'SUCCEEDED' && (task.action === 'stop' || task.action === 'savepoint')) laterSavepoints();
    }),
    live.on('app_deleted', (gone) => { if (gone.id === id) load(); }),
    live.on('node_left', load),
    live.on('resync', () => { load(); loadTasks(); }),
  ];
  load().then(loadSavepoints);
  loadTasks();
  loadLog();
  return () => { offs.forEach((off) => off()); laterTasks.cancel(); laterLog.cancel(); laterSavepoints.cancel(); };
}
