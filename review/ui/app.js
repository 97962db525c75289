// The review UI: plain DOM over the JSON API (/openapi.json); no build step, no dependencies.
// Text from events is only ever set as textContent, never parsed as HTML.
const state = { csrf: null, me: null, pipelines: [], pipeline: null, items: [], selected: 0, item: null };
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && state.csrf) headers['x-csrf-token'] = state.csrf;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(data?.error?.message ?? `HTTP ${response.status}`);
    error.code = data?.error?.code ?? 'HTTP_ERROR';
    error.status = response.status;
    throw error;
  }
  return data;
}

function notice(text, kind = 'info') {
  const box = $('notice');
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

/** What a refusal means to a reviewer, in words. */
function explain(error) {
  switch (error.code) {
    case 'CLAIMED_BY_OTHER':
      return `Taken by someone else: ${error.message}`;
    case 'ALREADY_RESOLVED':
      return `Already resolved by someone else: ${error.message}`;
    case 'UNAUTHENTICATED':
      return 'Your session has ended; sign in again.';
    default:
      return `${error.code}: ${error.message}`;
  }
}

function show(section) {
  for (const id of ['signin', 'choose-password', 'queue', 'item']) $(id).hidden = id !== section;
  $('nav').hidden = section === 'signin' || section === 'choose-password';
}

const when = (ms) => (ms === null || ms === undefined ? '' : new Date(ms).toLocaleString());

function dueText(dueAt) {
  const minutes = Math.round((dueAt - Date.now()) / 60_000);
  return minutes < 0 ? `overdue ${-minutes} min` : `in ${minutes} min`;
}

async function start() {
  try {
    const me = await api('GET', '/api/session');
    await signedIn(me);
  } catch {
    show('signin');
    $('username').focus();
  }
}

async function signedIn(me) {
  state.me = me;
  state.csrf = me.csrf_token;
  if (me.must_change_password) {
    show('choose-password');
    $('new-password').focus();
    return;
  }
  $('whoami').textContent = `${me.username} (${me.role})`;
  const { pipelines } = await api('GET', '/api/pipelines');
  state.pipelines = pipelines;
  const select = $('pipeline');
  select.replaceChildren(...pipelines.map((p) => new Option(`${p.name} (${p.counts.open} open)`, p.name)));
  state.pipeline = pipelines[0]?.name ?? null;
  await route();
}

function pipelineInfo() {
  return state.pipelines.find((p) => p.name === state.pipeline);
}

async function route() {
  const match = /^#\/item\/([^/]+)\/([^/]+)$/.exec(location.hash);
  if (match) {
    state.pipeline = decodeURIComponent(match[1]);
    $('pipeline').value = state.pipeline;
    await openItem(decodeURIComponent(match[2]));
  } else {
    await loadQueue();
  }
}

async function loadQueue() {
  if (!state.pipeline) return;
  show('queue');
  try {
    const { items } = await api('GET', `/api/pipelines/${encodeURIComponent(state.pipeline)}/items?status=${$('status').value}`);
    state.items = items;
    state.selected = Math.min(state.selected, Math.max(0, items.length - 1));
    renderQueue();
  } catch (error) {
    handle(error);
  }
}

function renderQueue() {
  const settings = pipelineInfo()?.settings;
  const policy = settings
    ? ` · SLA ${settings.sla_seconds >= 3600 ? `${+(settings.sla_seconds / 3600).toFixed(1)} h` : `${settings.sla_seconds} s`}, then ${settings.fallback_decision} · ${+(settings.audit_rate * 100).toFixed(2)}% of automatic decisions audited`
    : '';
  $('queue-count').textContent = `${state.items.length} item${state.items.length === 1 ? '' : 's'}${policy}`;
  $('items').replaceChildren(
    ...state.items.map((item, index) => {
      const row = document.createElement('tr');
      row.dataset.itemId = item.item_id;
      if (index === state.selected) row.className = 'selected';
      if (item.status === 'open' && item.due_at < Date.now()) row.classList.add('overdue');
      const cells = [
        item.status === 'open' ? dueText(item.due_at) : item.status,
        item.event_id,
        item.kind,
        item.decision,
        item.score === null ? '—' : item.score.toFixed(3),
        item.reasons.join(', '),
        item.claimed_by ?? '',
      ];
      for (const text of cells) {
        const cell = document.createElement('td');
        cell.textContent = text;
        row.append(cell);
      }
      row.addEventListener('click', () => {
        location.hash = `#/item/${encodeURIComponent(state.pipeline)}/${encodeURIComponent(item.item_id)}`;
      });
      return row;
    }),
  );
}

async function openItem(itemId) {
  try {
    const { item } = await api('GET', `/api/pipelines/${encodeURIComponent(state.pipeline)}/items/${encodeURIComponent(itemId)}`);
    state.item = item;
    renderItem();
    show('item');
  } catch (error) {
    handle(error);
  }
}

function renderItem() {
  const item = state.item;
  const info = pipelineInfo();
  $('item-event').textContent = item.event_id;
  $('item-status').textContent = item.status === 'open' ? (item.claimed_by ? `claimed by ${item.claimed_by}` : 'open') : item.status;
  const facts = [
    ['pipeline', item.pipeline],
    [
      'kind',
      item.kind === 'audit'
        ? 'audit: an automatic decision sampled for checking; it stands unless you change it'
        : 'review: the pipeline could not decide this one',
    ],
    ['decision under review', `${item.decision} (by ${item.decided_by}, version ${item.decision_version})`],
    ...Object.entries(item.fields).map(([name, value]) => [`proposed ${name}`, String(value)]),
    ['score', item.score === null ? '— (no model consulted)' : item.score.toFixed(4)],
    ['reasons', item.reasons.join(', ')],
    ['model version', item.model_version ?? '—'],
    ['policy version', item.policy_version],
    ['occurred', when(item.occurred_at)],
    ['queued', when(item.created_at)],
    ['due', `${when(item.due_at)} (${dueText(item.due_at)})`],
  ];
  if (item.resolution) facts.push(['resolution', `${item.resolution.decision} by ${item.resolution.by} at ${when(item.resolution.at)}: ${item.resolution.reason}`]);
  $('item-facts').replaceChildren(
    ...facts.flatMap(([name, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = name;
      const dd = document.createElement('dd');
      dd.textContent = value;
      return [dt, dd];
    }),
  );
  $('item-payload').textContent = JSON.stringify(item.payload, null, 2);
  const open = item.status === 'open';
  const mine = item.claimed_by === state.me.username;
  $('claim').hidden = !open || mine;
  $('release').hidden = !open || !mine;
  $('resolve-form').hidden = !open || (item.claimed_by !== null && !mine);
  $('decision').replaceChildren(...info.decisions.map((d) => new Option(d, d)));
  // An audit opens on the automatic decision: confirming it is the frequent answer, and writes no new decision.
  if (item.kind === 'audit' && info.decisions.includes(item.decision)) $('decision').value = item.decision;
  $('extra-fields').replaceChildren(
    ...info.fields.map((field) => {
      const label = document.createElement('label');
      label.textContent = `${field.name} `;
      let input;
      if (field.values) {
        input = document.createElement('select');
        input.append(...field.values.map((v) => new Option(v, v)));
      } else {
        input = document.createElement('input');
      }
      input.name = field.name;
      input.id = `field-${field.name}`;
      input.value = item.fields[field.name] ?? '';
      label.append(input);
      return label;
    }),
  );
  $('reason').value = '';
}

async function claim() {
  if (!state.item) return;
  try {
    const { item } = await api('POST', `/api/pipelines/${encodeURIComponent(state.pipeline)}/items/${encodeURIComponent(state.item.item_id)}/claim`);
    state.item = item;
    renderItem();
    notice(`Claimed until ${when(item.claim_expires_at)}.`, 'ok');
    $('reason').focus();
  } catch (error) {
    handle(error);
  }
}

async function release() {
  try {
    const { item } = await api('POST', `/api/pipelines/${encodeURIComponent(state.pipeline)}/items/${encodeURIComponent(state.item.item_id)}/release`);
    state.item = item;
    renderItem();
    notice('Released.', 'ok');
  } catch (error) {
    handle(error);
  }
}

async function resolve(event) {
  event.preventDefault();
  const body = { decision: $('decision').value, reason: $('reason').value };
  for (const field of pipelineInfo().fields) body[field.name] = $(`field-${field.name}`).value;
  try {
    const { item } = await api('POST', `/api/pipelines/${encodeURIComponent(state.pipeline)}/items/${encodeURIComponent(state.item.item_id)}/resolve`, body);
    state.item = item;
    renderItem();
    notice(`Resolved: ${item.resolution.decision} (decision version ${item.resolution.decision_version}).`, 'ok');
  } catch (error) {
    handle(error);
  }
}

function handle(error) {
  notice(explain(error), 'error');
  if (error.code === 'UNAUTHENTICATED') {
    show('signin');
    return;
  }
  // Someone else took or closed it: show the item as it now stands.
  if ((error.code === 'CLAIMED_BY_OTHER' || error.code === 'ALREADY_RESOLVED') && state.item) {
    api('GET', `/api/pipelines/${encodeURIComponent(state.pipeline)}/items/${encodeURIComponent(state.item.item_id)}`)
      .then(({ item }) => {
        state.item = item;
        renderItem();
      })
      .catch(() => {});
  }
}

$('signin-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  try {
    const me = await api('POST', '/api/session', { username: $('username').value, password: $('password').value });
    if (me.must_change_password) $('current-password').value = $('password').value;
    $('password').value = '';
    notice('');
    await signedIn(me);
  } catch (error) {
    notice(error.code === 'INVALID_CREDENTIALS' ? 'Wrong user name or password.' : explain(error), 'error');
  }
});
$('password-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  if ($('new-password').value !== $('repeat-password').value) {
    notice('The two new passwords differ.', 'error');
    return;
  }
  try {
    await api('POST', '/api/session/password', { current_password: $('current-password').value, new_password: $('new-password').value });
    for (const id of ['current-password', 'new-password', 'repeat-password']) $(id).value = '';
    notice('Password changed.', 'ok');
    await signedIn({ ...state.me, must_change_password: false });
  } catch (error) {
    notice(error.code === 'WRONG_PASSWORD' ? 'The one-time password is wrong.' : explain(error), 'error');
  }
});
$('signout').addEventListener('click', async () => {
  await api('DELETE', '/api/session').catch(() => {});
  state.csrf = null;
  show('signin');
});
$('pipeline').addEventListener('change', () => {
  state.pipeline = $('pipeline').value;
  state.selected = 0;
  location.hash = '';
  loadQueue();
});
$('status').addEventListener('change', loadQueue);
$('back').addEventListener('click', (event) => {
  event.preventDefault();
  location.hash = '';
});
$('claim').addEventListener('click', claim);
$('release').addEventListener('click', release);
$('resolve-form').addEventListener('submit', resolve);
window.addEventListener('hashchange', () => {
  notice('');
  route();
});

document.addEventListener('keydown', (event) => {
  const typing = ['INPUT', 'TEXTAREA', 'SELECT'].includes(document.activeElement?.tagName ?? '');
  if (event.key === 'Escape') {
    if (typing) document.activeElement.blur();
    else if (!$('item').hidden) location.hash = '';
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  if (!$('queue').hidden) {
    if (event.key === 'j' || event.key === 'k') {
      state.selected = Math.max(0, Math.min(state.items.length - 1, state.selected + (event.key === 'j' ? 1 : -1)));
      renderQueue();
    } else if (event.key === 'Enter' && state.items[state.selected]) {
      location.hash = `#/item/${encodeURIComponent(state.pipeline)}/${encodeURIComponent(state.items[state.selected].item_id)}`;
    }
  } else if (!$('item').hidden) {
    if (event.key === 'c') claim();
    else if (event.key === 'r') {
      event.preventDefault();
      $('reason').focus();
    } else if (event.key === 'a' && state.item) {
      // Accept the proposed fields (ticket-triage: the model's queue) with the first allowed decision; a reason is still needed.
      $('decision').value = pipelineInfo().decisions[0];
      event.preventDefault();
      $('reason').focus();
    }
  }
});

// The queue refreshes itself while it is shown.
setInterval(() => {
  if (!$('queue').hidden && state.csrf) loadQueue();
}, 5_000);

start();
