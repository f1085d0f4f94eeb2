// The cluster page: the registry and database in use, the live nodes, and how the apps are
// spread over them.

import { get } from './api.js';
import { badge, debounce, duration, facts, h, orDash, replace } from './dom.js';
import * as live from './live.js';

const STATES = ['CREATED', 'STARTING', 'RUNNING', 'STOPPING', 'STOPPED', 'FAILED'];

/** Renders the page into `main`; returns a function that stops its live updates. */
export function clusterPage(main) {
  const summaryBox = h('section', { 'aria-labelledby': 'summary-title', class: 'card' });
  const nodesBox = h('section', { 'aria-labelledby': 'nodes-title', class: 'card' });
  const spreadBox = h('section', { 'aria-labelledby': 'spread-title', class: 'card' });
  const errorBox = h('p', { class: 'error', role: 'alert', hidden: true });
  replace(main, h('h1', {}, 'Cluster'), errorBox, summaryBox, spreadBox, nodesBox);
  let nodes = [];
  let summary = null;

  const refresh = async () => {
    try {
      [summary, nodes] = await Promise.all([get('/api/v1/cluster'), get('/api/v1/cluster/nodes')]);
      errorBox.hidden = true;
      draw();
    } catch (error) {
      errorBox.textContent = `Cannot read the cluster: ${error.message}`;
      errorBox.hidden = false;
    }
  };
  const draw = () => {
    drawSummary(summaryBox, summary);
    drawSpread(spreadBox, nodes, summary);
    drawNodes(nodesBox, nodes, summary);
  };
  const later = debounce(refresh, 1000);
  const offs = [
    live.on('node_joined', (node) => { nodes = upsert(nodes, node); draw(); later(); }),
    live.on('node_changed', (node) => { nodes = upsert(nodes, node); draw(); }),
    live.on('node_left', ({ id }) => { nodes = nodes.filter((n) => n.id !== id); draw(); later(); }),
    live.on('app_changed', later),
    live.on('app_deleted', later),
    live.on('resync', refresh),
  ];
  // Uptimes move on by themselves, and a takeover changes the leases without an event for
  // every app: read both again every few seconds.
  const ticker = setInterval(refresh, 5000);
  refresh();
  return () => { offs.forEach((off) => off()); later.cancel(); clearInterval(ticker); };
}

function upsert(nodes, node) {
  const others = nodes.filter((n) => n.id !== node.id);
  return [...others, node].sort((a, b) => a.id.localeCompare(b.id));
}

function drawSummary(box, summary) {
  const counts = summary.apps.by_state || {};
  replace(box,
    h('h2', { id: 'summary-title' }, 'Overview'),
    facts([
      ['Registry', h('span', { id: 'registry-type' }, summary.registry)],
      ['Task database', summary.database],
      ['Leader', orDash(summary.leader)],
      ['Live nodes', String(summary.nodes)],
      ['This page talks to', `${summary.node} (registry session ${summary.session.replace('_', ' ')}${summary.acting ? '' : ', not acting'})`],
      ['Apps', `${summary.apps.total} in all`],
    ], 'Cluster overview'),
    h('ul', { class: 'counts', 'aria-label': 'Apps by state' },
      STATES.filter((s) => counts[s]).map((s) =>
        h('li', {}, h('a', { href: `#/apps?state=${s}` }, badge(s), ` ${counts[s]}`)))),
  );
}

/**
 * One bar per node, its length the node's share of the held apps, with the figures in words.
 * The counts are the app leases in the task store (`held_by_node`), so a takeover shows at once;
 * a node that is gone but still holds leases (not yet fenced) gets a row of its own.
 */
function drawSpread(box, nodes, summary) {
  const counts = summary.apps.by_state || {};
  const heldBy = summary.held_by_node || {};
  const heldOf = (n) => heldBy[n.id] ?? n.owned_apps ?? 0;
  const gone = Object.keys(heldBy).filter((id) => !nodes.some((n) => n.id === id));
  const rows = [
    ...nodes.map((n) => ({ id: n.id, label: n.id + (n.leader ? ' ★' : ''), count: heldOf(n),
      extra: n.capacity !== undefined ? ` of capacity ${n.capacity}` : '' })),
    ...gone.map((id) => ({ id, label: `${id} (not live)`, count: heldBy[id], extra: '', cls: 'unowned' })),
  ];
  const active = ['STARTING', 'RUNNING', 'STOPPING'].reduce((sum, s) => sum + (counts[s] || 0), 0);
  const held = rows.reduce((sum, r) => sum + r.count, 0);
  const unheld = Math.max(0, active - held);
  if (unheld > 0) rows.push({ id: '', label: 'active, no owner', count: unheld, extra: '', cls: 'unowned' });
  const widest = Math.max(1, ...rows.map((r) => r.count));
  const total = held + unheld;
  const row = (r) => h('li', { class: `spread-row ${r.cls || ''}`, dataset: { node: r.id, count: String(r.count) } },
    h('span', { class: 'spread-label' }, r.label),
    h('span', { class: 'spread-track', 'aria-hidden': 'true' },
      h('span', { class: 'spread-bar', dataset: { width: String(Math.round((100 * r.count) / widest)) } })),
    h('span', { class: 'spread-figure' },
      `${r.count} app${r.count === 1 ? '' : 's'}${total ? ` (${Math.round((100 * r.count) / total)}%)` : ''}${r.extra}`));
  const list = h('ul', { class: 'spread', id: 'ownership', 'aria-label': 'Apps owned by each node' },
    rows.map(row));
  replace(box, h('h2', { id: 'spread-title' }, 'Ownership'),
    h('p', { class: 'hint' }, `How the ${held} apps held by a node now (active ones, and those with queued tasks) are spread over the nodes, from the app leases in the task database; ★ marks the leader. The other ${Math.max(0, summary.apps.total - held)} apps are idle: their owner takes them when they get a task.`),
    list);
  // Widths go through the CSSOM: the style-src policy forbids inline style attributes.
  for (const bar of list.querySelectorAll('.spread-bar')) bar.style.width = `${bar.dataset.width}%`;
}

function drawNodes(box, nodes, summary) {
  const optional = [
    ['capacity', 'Capacity'], ['owned_weight', 'Owned weight'],
  ].filter(([key]) => nodes.some((n) => n[key] !== undefined));
  const now = Date.now();
  replace(box,
    h('h2', { id: 'nodes-title' }, `Nodes (${nodes.length} live)`),
    h('table', { class: 'grid', id: 'nodes' },
      h('thead', {}, h('tr', {},
        ['Node', 'Address', 'Role', 'Registry session', 'Up for', 'Owned apps', 'Actions in flight',
          ...optional.map(([, label]) => label), 'Version'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, nodes.map((n) => h('tr', { dataset: { node: n.id } },
        h('th', { scope: 'row' }, n.id),
        h('td', {}, `${n.host}:${n.port}`),
        h('td', {}, n.leader ? h('strong', {}, '★ leader') : 'member'),
        h('td', {}, n.id === summary.node ? summary.session.replace('_', ' ') : 'live (in registry)'),
        h('td', { title: 'started ' + new Date(n.started_at).toISOString() }, duration(now - n.started_at)),
        h('td', { class: 'num' }, String((summary.held_by_node || {})[n.id] ?? n.owned_apps)),
        h('td', { class: 'num' }, String(n.running_tasks)),
        optional.map(([key]) => h('td', { class: 'num' }, orDash(n[key]))),
        h('td', {}, n.version),
      )))),
  );
}
