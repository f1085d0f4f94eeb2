// The page's entry: asks for the token when the console wants one, opens the live stream and
// shows the page the address names (#/cluster, #/apps?state=..., #/apps/12).

import { ApiError, get, onUnauthorized, setToken, token } from './api.js';
import { h, replace } from './dom.js';
import * as live from './live.js';
import { clusterPage } from './cluster.js';
import { appsPage } from './apps.js';
import { detailPage } from './detail.js';

const main = document.getElementById('main');
const liveStatus = document.getElementById('live');
let leave = () => {};
let asking = false;

function route() {
  leave();
  leave = () => {};
  const [path, search] = (location.hash.slice(1) || '/cluster').split('?');
  const params = new URLSearchParams(search || '');
  const detail = path.match(/^\/apps\/(\d+)$/);
  for (const link of document.querySelectorAll('nav a')) {
    const current = path.startsWith(link.getAttribute('href').slice(1));
    if (current) link.setAttribute('aria-current', 'page'); else link.removeAttribute('aria-current');
  }
  if (detail) {
    document.title = `App ${detail[1]} · Console`;
    leave = detailPage(main, Number(detail[1]));
  } else if (path === '/apps') {
    document.title = 'Apps · Console';
    leave = appsPage(main, params);
  } else {
    document.title = 'Cluster · Console';
    leave = clusterPage(main);
  }
}

/** The token form: shown when a call answers 401. Nothing else is shown until it works. */
function askForToken(reason) {
  if (asking) return;
  asking = true;
  leave();
  leave = () => {};
  live.stop();
  liveStatus.textContent = 'Not signed in';
  liveStatus.dataset.state = 'down';
  const input = h('input', { id: 'token', name: 'token', type: 'password', required: true, autocomplete: 'current-password', 'aria-describedby': 'token-hint token-error' });
  const error = h('p', { class: 'field-error', id: 'token-error', role: 'alert', hidden: !reason }, reason || '');
  replace(main, h('form', { class: 'card signin', id: 'signin', onsubmit: async (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    try {
      await get('/api/v1/cluster');
      asking = false;
      startApp();
    } catch (failure) {
      error.textContent = failure.status === 401 ? 'That token was refused.' : failure.message;
      error.hidden = false;
      input.focus();
    }
  } },
  h('h1', {}, 'Sign in'),
  h('p', { id: 'token-hint' }, 'This console needs its access token (server.auth_token). It is kept for this browser tab only.'),
  h('div', { class: 'field' }, h('label', { for: 'token' }, 'Access token'), input, error),
  h('div', { class: 'buttons' }, h('button', { type: 'submit' }, 'Sign in'))));
  input.focus();
}

function startApp() {
  live.start(liveStatus, () => askForToken('The token was refused; enter it again.'));
  route();
}

onUnauthorized((failure) => {
  const hadToken = token() !== '';
  setToken('');
  askForToken(hadToken ? 'The token was refused; enter it again.' : '');
  void failure;
});

window.addEventListener('hashchange', () => { if (!asking) { route(); main.focus({ preventScroll: true }); } });

get('/api/v1/cluster').then(startApp, (error) => {
  if (error instanceof ApiError && error.status === 401) return; // the form is shown
  replace(main, h('p', { class: 'error', role: 'alert' }, `The console does not answer: ${error.message}`));
  startApp();
});
