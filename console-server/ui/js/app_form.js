// The "New app" form: the API's validation errors are shown next to the field they concern.

import { post } from './api.js';
import { h } from './dom.js';

const EXAMPLE_SPEC = '{\n  "command": ["sh", "-c", "while true; do date; sleep 5; done"]\n}';

/** Which field an error answer of POST /api/v1/apps is about. */
function fieldOf(error) {
  if (error.code === 'invalid_name') return 'name';
  if (/executor/i.test(error.message) && !/spec/i.test(error.code)) return 'executor';
  if (error.code === 'invalid_spec' && /unknown executor/i.test(error.message)) return 'executor';
  if (error.code === 'invalid_spec' || error.code === 'invalid_body') return 'spec';
  return null;
}

/** The form and the button that opens it; `created(app)` runs after a creation. */
export function createForm(created) {
  const errors = {};
  const field = (id, label, control, hint) => {
    errors[id] = h('p', { class: 'field-error', id: `app-${id}-error`, role: 'alert', hidden: true });
    control.setAttribute('aria-describedby', `app-${id}-hint app-${id}-error`);
    return h('div', { class: 'field' },
      h('label', { for: `app-${id}` }, label), control,
      h('p', { class: 'hint', id: `app-${id}-hint` }, hint), errors[id]);
  };
  const name = h('input', { id: 'app-name', name: 'name', required: true, maxlength: 255, autocomplete: 'off' });
  const executor = h('input', { id: 'app-executor', name: 'executor', value: 'process', list: 'executors', autocomplete: 'off' });
  const spec = h('textarea', { id: 'app-spec', name: 'spec', rows: 5, spellcheck: 'false' });
  spec.value = EXAMPLE_SPEC;
  const general = h('p', { class: 'error', role: 'alert', hidden: true });
  const done = h('p', { class: 'ok', role: 'status' });
  const show = (id, message) => {
    errors[id].textContent = message;
    errors[id].hidden = false;
    document.getElementById(`app-${id}`).setAttribute('aria-invalid', 'true');
  };
  const clear = () => {
    for (const id of Object.keys(errors)) {
      errors[id].hidden = true;
      document.getElementById(`app-${id}`)?.removeAttribute('aria-invalid');
    }
    general.hidden = true;
    done.textContent = '';
  };
  const form = h('form', { class: 'card create', id: 'create-app', hidden: true, 'aria-labelledby': 'create-title', novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      clear();
      let parsed;
      try { parsed = JSON.parse(spec.value); } catch (error) {
        show('spec', `The spec is not valid JSON: ${error.message}`);
        spec.focus();
        return;
      }
      try {
        const app = await post('/api/v1/apps', { name: name.value, executor: executor.value.trim() || undefined, spec: parsed });
        done.textContent = `Created app ${app.id} “${app.name}”.`;
        name.value = '';
        created(app);
      } catch (error) {
        const id = fieldOf(error);
        if (id) { show(id, error.message); document.getElementById(`app-${id}`).focus(); } else {
          general.textContent = error.message;
          general.hidden = false;
        }
      }
    } },
  h('h2', { id: 'create-title' }, 'New app'),
  field('name', 'Name', name, '1 to 255 characters; need not be unique.'),
  field('executor', 'Executor', executor, 'process runs a command line on the owner’s host.'),
  h('datalist', { id: 'executors' }, h('option', { value: 'process' }), h('option', { value: 'flink' })),
  field('spec', 'Spec (JSON)', spec, 'For process: {"command": ["program", "arg", …]}, optionally "env" and "cwd".'),
  general,
  h('div', { class: 'buttons' },
    h('button', { type: 'button', class: 'secondary', onclick: () => { form.hidden = true; opener.setAttribute('aria-expanded', 'false'); opener.focus(); } }, 'Close'),
    h('button', { type: 'submit', id: 'create-submit' }, 'Create')),
  done);
  const opener = h('button', { type: 'button', id: 'new-app', 'aria-expanded': 'false', 'aria-controls': 'create-app',
    onclick: () => { form.hidden = !form.hidden; opener.setAttribute('aria-expanded', String(!form.hidden)); if (!form.hidden) name.focus(); } }, 'New app');
  return { element: form, opener };
}
