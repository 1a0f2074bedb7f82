/*
 * app.js - the Function Runner page.
 *
 * Left: a form built from GET /api/functions; submitting posts
 * /api/generate and shows a field error next to the field it names.
 * Right: one card per job, newest first, kept live by ONE EventSource on
 * /api/events?jobs=<ids of live cards>, re-opened whenever that set changes
 * (the browser resumes a dropped stream with Last-Event-ID by itself). The
 * jobs this browser submitted are remembered in localStorage, so a reload
 * finds its cards again and reconnects.
 *
 * With API keys (GET /api/session says keys_required) the page first asks
 * for one: POST /api/session sets an HttpOnly cookie that every request,
 * image and event stream then carries; any 401 brings the sign-in back.
 * Each key name has its own list of remembered jobs.
 *
 * Plain JavaScript, no build step, and no request leaves the server that
 * served the page. Every text from the server goes in with textContent;
 * only result URLs under /api/outputs/ are used as links.
 */
'use strict';

(() => {
  const STORE_KEY = 'fnrun.jobs.v1';
  const PANEL_KEY = 'fnrun.panel.collapsed';
  const MAX_JOBS = 50; /* cards kept and remembered */
  const MAX_LIVE = 100; /* jobs one event stream may watch (server limit) */
  const RETRY_MS = 3000; /* after the server could not be reached */
  const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
  const STATUS_TEXT = {
    loading: 'Loading',
    queued: 'Waiting',
    preparing: 'Getting ready',
    running: 'In progress',
    completed: 'Done',
    failed: "Didn't finish",
    cancelled: 'Cancelled',
  };

  const $ = (id) => document.getElementById(id);

  const state = {
    catalog: null, /* GET /api/functions */
    jobs: [], /* {id, function, quality, qualityLabel, params, view, viewAt, el, ui} */
    source: null, /* the one EventSource */
    sourceKey: '', /* the ids it watches, comma-joined */
    streamTimer: 0,
    refreshTimer: 0,
    catalogTimer: 0,
    startTimer: 0,
    submitting: false,
    user: null, /* GET /api/session when signed in with a key, else null */
    epoch: 0, /* bumped when the page stops (sign-in needed): late answers are dropped */
    signingIn: false,
  };

  /* ---- small helpers ---- */

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  /*
   * One JSON request to this server: {status, data}; status 0 when
   * unreachable. A 401 outside /api/session means the key is needed (or no
   * longer works): the page stops and asks for one.
   */
  async function api(method, path, body) {
    const opts = { method, headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      return { status: 0, data: null };
    }
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      data = null;
    }
    if (res.status === 401 && path !== '/api/session') needSignIn();
    return { status: res.status, data };
  }

  function banner(text) {
    const b = $('banner');
    b.textContent = text || '';
    b.hidden = !text;
  }

  function announce(text) {
    /* Cleared first so the same sentence twice is still read out. */
    const a = $('announce');
    a.textContent = '';
    setTimeout(() => { a.textContent = text; }, 50);
  }

  /* Param names whose plain-language label is not just the name. */
  const LABELS = { fps: 'Frames per second' };

  function humanize(name) {
    if (LABELS[name]) return LABELS[name];
    const s = name.replace(/[_-]+/g, ' ').trim();
    return s.charAt(0).toUpperCase() + s.slice(1);
  }

  function capitalize(s) {
    return s ? s.charAt(0).toUpperCase() + s.slice(1) : s;
  }

  function rangeText(secs) {
    if (!Array.isArray(secs) || secs.length !== 2) return '';
    const [lo, hi] = secs;
    if (hi >= 120) {
      const a = Math.max(1, Math.round(lo / 60));
      const b = Math.max(a, Math.round(hi / 60));
      return a === b ? `about ${a} min` : `${a}–${b} min`;
    }
    return lo === hi ? `about ${lo} s` : `${lo}–${hi} s`;
  }

  function qualityText(q) {
    const r = rangeText(q.typical_seconds);
    return (r ? `${q.label} · ${r}` : q.label) + (q.available === false ? ' (unavailable)' : '');
  }

  function timeLeftText(seconds) {
    if (seconds === null || seconds === undefined) return '';
    if (seconds <= 0) return 'almost done';
    if (seconds < 60) return `about ${seconds} s left`;
    return `about ${Math.round(seconds / 60)} min left`;
  }

  function aheadText(pos) {
    if (pos === null || pos === undefined) return '';
    if (pos === 0) return "you're next";
    return pos === 1 ? '1 job ahead of yours' : `${pos} jobs ahead of yours`;
  }

  /* Only our own result files become links or media sources. */
  function safeUrl(u) {
    return typeof u === 'string' && u.startsWith('/api/outputs/') ? u : null;
  }

  function findFunction(name) {
    const fs = state.catalog ? state.catalog.functions : [];
    return fs.find((f) => f.name === name) || null;
  }

  /* The next lower quality of fn below key that can run, or null. */
  function lowerQuality(fn, key) {
    if (!fn) return null;
    const i = fn.qualities.findIndex((q) => q.key === key);
    for (let j = i - 1; j >= 0; j--)
      if (fn.qualities[j].available !== false) return fn.qualities[j];
    return null;
  }

  function isLive(job) {
    return !job.view || !TERMINAL.has(job.view.status);
  }

  /* ---- remembering jobs ---- */

  /* Where this browser remembers its jobs: one list per key name. */
  function storeKey() {
    const u = state.user;
    return u && u.name ? `${STORE_KEY}.${u.scope || 'user'}.${u.name}` : STORE_KEY;
  }

  function save() {
    const list = state.jobs.map((j) => ({
      id: j.id,
      function: j.function,
      quality: j.quality,
      qualityLabel: j.qualityLabel,
      params: j.params,
    }));
    try {
      localStorage.setItem(storeKey(), JSON.stringify(list));
    } catch (e) {
      /* Private mode or full: the page still works, it just forgets. */
    }
  }

  function restore() {
    let list = [];
    try {
      list = JSON.parse(localStorage.getItem(storeKey()) || '[]');
    } catch (e) {
      list = [];
    }
    if (!Array.isArray(list)) list = [];
    for (const r of list.slice(0, MAX_JOBS).reverse()) {
      if (r && typeof r.id === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(r.id)) addJob(r, null);
    }
  }

  /* ---- the catalog and the form ---- */

  async function loadCatalog() {
    const epoch = state.epoch;
    const { status, data } = await api('GET', '/api/functions');
    if (epoch !== state.epoch) return; /* signed out meanwhile */
    if (status !== 200 || !data || !Array.isArray(data.functions)) {
      $('catalog-status').textContent = status === 0
        ? "Can't reach the Function Runner. Trying again…"
        : 'The list of functions is not available right now. Trying again…';
      state.catalogTimer = setTimeout(loadCatalog, RETRY_MS);
      return;
    }
    state.catalog = data;
    if (data.functions.length === 0) {
      $('catalog-status').textContent = 'Nothing can be made here yet.';
      return;
    }
    $('catalog-status').textContent = '';
    $('catalog-status').hidden = true;
    buildFunctions();
    $('form').hidden = false;
    for (const j of state.jobs) renderCard(j); /* action buttons need the catalog */
  }

  function buildFunctions() {
    const sel = $('function');
    sel.replaceChildren(...state.catalog.functions.map((f) =>
      el('option', { value: f.name, text: f.name })));
    buildFunctionForm();
  }

  function currentFunction() {
    return findFunction($('function').value);
  }

  function buildFunctionForm() {
    const fn = currentFunction();
    $('function-desc').textContent = fn.description || '';
    $('function-desc').hidden = !fn.description;
    const qs = $('quality');
    qs.replaceChildren(...fn.qualities.map((q) => el('option', {
      value: q.key,
      text: qualityText(q),
      disabled: q.available === false,
    })));
    const def = fn.qualities.find((q) => q.key === fn.default_quality && q.available !== false);
    const first = fn.qualities.find((q) => q.available !== false);
    if (def || first) qs.value = (def || first).key;
    const box = $('params');
    box.replaceChildren(...Object.entries(fn.params || {}).map(([n, p]) => paramField(n, p)));
    clearErrors();
  }

  function paramHint(p) {
    const parts = [];
    if (p.description) parts.push(capitalize(p.description) + '.');
    if (p.type === 'string' && p.max_length) parts.push(`Up to ${p.max_length} characters.`);
    if ((p.type === 'int' || p.type === 'float') && !p.random && p.min !== undefined && p.max !== undefined)
      parts.push(`From ${p.min} to ${p.max}.`);
    if (p.random) parts.push('Leave empty for a random one.');
    return parts.join(' ');
  }

  function paramInput(id, p, describedBy) {
    const common = { id, name: id, 'aria-describedby': describedBy };
    if (p.type === 'string') {
      return el('textarea', Object.assign(common, {
        rows: 3,
        maxlength: p.max_length || undefined,
        required: !!p.required,
        'aria-required': p.required ? 'true' : undefined,
      }), typeof p.default === 'string' ? p.default : '');
    }
    if (p.type === 'int' || p.type === 'float') {
      const limits = p.random ? {} : { min: p.min, max: p.max };
      return el('input', Object.assign(common, limits, {
        type: 'number',
        step: p.type === 'int' ? 1 : 'any',
        inputmode: p.type === 'int' ? 'numeric' : 'decimal',
        value: p.random || p.default === undefined ? undefined : p.default,
        placeholder: p.random ? 'random' : undefined,
        required: !!p.required,
      }));
    }
    if (p.type === 'bool')
      return el('input', Object.assign(common, { type: 'checkbox', checked: p.default === true }));
    if (p.type === 'enum') {
      const sel = el('select', common, ...(p.options || []).map((o) => el('option', { value: o, text: o })));
      if (p.default !== undefined) sel.value = p.default;
      return sel;
    }
    return el('input', Object.assign(common, { type: 'text' }));
  }

  function paramField(name, p) {
    const id = `param-${name}`;
    const hint = paramHint(p);
    const describedBy = [hint ? `${id}-hint` : null, `${id}-error`].filter(Boolean).join(' ');
    const input = paramInput(id, p, describedBy);
    const label = el('label', { for: id, text: humanize(name) });
    if (p.required) label.append(el('span', { class: 'req', text: ' (required)' }));
    input.addEventListener('input', () => clearFieldError(id));
    const hintEl = hint ? el('p', { id: `${id}-hint`, class: 'hint', text: hint }) : null;
    const err = el('p', { id: `${id}-error`, class: 'field-error', hidden: true });
    if (p.type === 'bool')
      return el('div', { class: 'field check', 'data-param': name }, input, label, hintEl, err);
    return el('div', { class: 'field', 'data-param': name }, label, input, hintEl, err);
  }

  /* The params object of the form, or null after showing a field error. */
  function collectParams(fn) {
    const params = {};
    for (const [name, p] of Object.entries(fn.params || {})) {
      const input = $(`param-${name}`);
      if (p.type === 'bool') {
        params[name] = input.checked;
      } else if (p.type === 'int' || p.type === 'float') {
        const v = input.value.trim();
        if (input.validity && input.validity.badInput) {
          fieldError(`param-${name}`, 'Enter a number.');
          return null;
        }
        if (v !== '') params[name] = Number(v);
      } else if (input.value.trim() !== '') {
        /* Left empty: the server's default, or its "is required" next to the field. */
        params[name] = input.value;
      }
    }
    return params;
  }

  function fieldError(id, text) {
    const input = $(id);
    const err = $(`${id}-error`);
    if (!input || !err) return false;
    err.textContent = text;
    err.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return true;
  }

  function clearFieldError(id) {
    const input = $(id);
    const err = $(`${id}-error`);
    if (err) err.hidden = true;
    if (input) input.removeAttribute('aria-invalid');
  }

  function clearErrors() {
    for (const e of document.querySelectorAll('#form .field-error')) e.hidden = true;
    for (const e of document.querySelectorAll('#form [aria-invalid]')) e.removeAttribute('aria-invalid');
    $('form-error').hidden = true;
  }

  /* "params.width: must be ..." next to the width field; else above the button. */
  function showSubmitError(status, data) {
    const e = data && data.error;
    if (!e) {
      $('form-error').textContent = status === 0
        ? "Can't reach the Function Runner. Check that it is running, then try again."
        : 'Something went wrong. Please try again.';
      $('form-error').hidden = false;
      return;
    }
    const field = e.field || '';
    const name = field.startsWith('params.') ? field.slice(7) : field;
    let text = e.message || '';
    if (field && text.startsWith(`${field}: `)) text = text.slice(field.length + 2);
    text = capitalize(text);
    const id = field.startsWith('params.') ? `param-${name}` : name;
    if (name && fieldError(id, text)) return;
    $('form-error').textContent = [e.message, e.suggestion].filter(Boolean).join(' ');
    $('form-error').hidden = false;
  }

  async function onSubmit(ev) {
    ev.preventDefault();
    if (state.submitting || !state.catalog) return;
    clearErrors();
    const fn = currentFunction();
    const params = collectParams(fn);
    if (!params) return;
    const q = fn.qualities.find((x) => x.key === $('quality').value);
    const req = { function: fn.name, quality: $('quality').value, qualityLabel: q ? q.label : '', params };
    state.submitting = true;
    $('submit').disabled = true;
    $('submit').textContent = 'Sending…';
    const res = await submitJob(req);
    state.submitting = false;
    $('submit').disabled = false;
    $('submit').textContent = 'Create';
    if (!res.ok && res.status !== 401) showSubmitError(res.status, res.data);
  }

  /* Posts one job; on success adds its card. {ok, status, data}. */
  async function submitJob(req) {
    const body = { function: req.function, quality: req.quality, params: req.params };
    const { status, data } = await api('POST', '/api/generate', body);
    if ((status !== 202 && status !== 200) || !data || !data.job_id)
      return { ok: false, status, data };
    const job = addJob(req, {
      job_id: data.job_id,
      function: req.function,
      quality: req.quality,
      quality_label: req.qualityLabel,
      status: data.status,
      progress: 0,
      message: '',
      queue_position: data.queue_position,
      eta_seconds: data.eta_seconds,
      outputs: [],
    });
    save();
    setPanelOpen(true);
    announce(`${cardTitle(job)}: started.`);
    scheduleStream();
    return { ok: true, status, data };
  }

  /* ---- cards ---- */

  function cardTitle(job) {
    const label = (job.view && job.view.quality_label) || job.qualityLabel || job.quality;
    return `${job.function} · ${label}`;
  }

  /* The first text param: what the user asked for, shown on the card. */
  function inputSummary(job) {
    if (!job.params) return '';
    const s = Object.values(job.params).find((v) => typeof v === 'string' && v.trim() !== '');
    if (!s) return '';
    return s.length > 140 ? `“${s.slice(0, 140)}…”` : `“${s}”`;
  }

  /* Adds a card at the top. view null: not known yet (after a reload). */
  function addJob(req, view) {
    const job = {
      id: view ? view.job_id : req.id,
      function: req.function,
      quality: req.quality,
      qualityLabel: req.qualityLabel,
      params: req.params && typeof req.params === 'object' ? req.params : null,
      view,
      viewAt: Date.now(),
      el: null,
      ui: null,
    };
    buildCard(job);
    state.jobs.unshift(job);
    $('jobs').prepend(job.el);
    while (state.jobs.length > MAX_JOBS) state.jobs.pop().el.remove();
    renderCard(job);
    updateCounts();
    return job;
  }

  function removeJob(job) {
    state.jobs = state.jobs.filter((j) => j !== job);
    job.el.remove();
    save();
    updateCounts();
    scheduleStream();
  }

  function buildCard(job) {
    const ids = { title: `job-${job.id}-title`, msg: `job-${job.id}-msg` };
    const ui = {
      title: el('h3', { class: 'card-title', id: ids.title }),
      badge: el('span', { class: 'badge' }),
      input: el('p', { class: 'card-input' }),
      bar: el('progress', { max: 100, 'aria-labelledby': ids.title, 'aria-describedby': ids.msg }),
      msg: el('p', { class: 'card-msg', id: ids.msg }),
      meta: el('p', { class: 'card-meta' }),
      result: el('div', { class: 'result', hidden: true }),
      error: el('div', { class: 'error-box', hidden: true }),
      actions: el('div', { class: 'card-actions' }),
      cancel: el('button', { type: 'button', class: 'secondary', text: 'Cancel' }),
      remove: el('button', { type: 'button', class: 'link', text: 'Remove' }),
      resultKey: '',
      errorKey: '',
    };
    ui.cancel.addEventListener('click', () => cancelJob(job));
    ui.remove.addEventListener('click', () => removeJob(job));
    ui.cancel.setAttribute('aria-describedby', ids.title);
    ui.remove.setAttribute('aria-describedby', ids.title);
    ui.actions.append(ui.cancel, ui.remove);
    job.ui = ui;
    job.el = el('li', { class: 'card', 'data-job-id': job.id, 'aria-labelledby': ids.title },
      el('div', { class: 'card-head' }, ui.title, ui.badge),
      ui.input, ui.bar, ui.msg, ui.meta, ui.result, ui.error, ui.actions);
  }

  /* Seconds left now: the last estimate, counted down since it came. */
  function etaNow(job) {
    const eta = job.view ? job.view.eta_seconds : null;
    if (eta === null || eta === undefined) return null;
    return Math.max(0, eta - Math.floor((Date.now() - job.viewAt) / 1000));
  }

  function metaText(job) {
    const v = job.view;
    if (!v || TERMINAL.has(v.status)) return '';
    const parts = [];
    if (v.status === 'queued') parts.push(aheadText(v.queue_position));
    parts.push(timeLeftText(etaNow(job)));
    return capitalize(parts.filter(Boolean).join(' · '));
  }

  function renderCard(job) {
    const v = job.view;
    const ui = job.ui;
    const status = v ? v.status : 'loading';
    job.el.dataset.status = status;
    ui.title.textContent = cardTitle(job);
    ui.badge.textContent = STATUS_TEXT[status] || status;
    ui.input.textContent = inputSummary(job);
    ui.input.hidden = !ui.input.textContent;
    renderProgress(job, status);
    ui.msg.textContent = status === 'failed' ? '' : (v && v.message) || (v ? '' : 'Checking on this job…');
    ui.msg.hidden = !ui.msg.textContent;
    ui.meta.textContent = metaText(job);
    ui.meta.hidden = !ui.meta.textContent;
    ui.cancel.hidden = !v || TERMINAL.has(status);
    ui.remove.hidden = !v || !TERMINAL.has(status);
    renderResult(job);
    renderError(job);
  }

  function renderProgress(job, status) {
    const bar = job.ui.bar;
    bar.hidden = status === 'failed' || status === 'cancelled';
    if (status === 'running' || status === 'completed') {
      bar.value = status === 'completed' ? 100 : job.view.progress || 0;
      bar.textContent = `${bar.value}%`;
    } else {
      bar.removeAttribute('value'); /* indeterminate while waiting */
      bar.textContent = '';
    }
  }

  /* Built once per set of outputs, so an image is not reloaded on each event. */
  function renderResult(job) {
    const v = job.view;
    const box = job.ui.result;
    const outs = v && v.status === 'completed' && Array.isArray(v.outputs) ? v.outputs : [];
    const key = JSON.stringify(outs);
    if (key === job.ui.resultKey) return;
    job.ui.resultKey = key;
    box.replaceChildren(...outs.map((o) => outputView(job, o)).filter(Boolean));
    box.hidden = box.childElementCount === 0;
  }

  function outputView(job, o) {
    const url = safeUrl(o.url);
    if (!url) return null;
    const what = inputSummary(job);
    if (o.kind === 'audio') {
      return el('div', { class: 'output' },
        el('audio', { controls: true, preload: 'metadata', src: url, 'aria-label': `Your audio ${what}` }),
        el('a', { href: url, download: o.filename || true, class: 'small', text: 'Download' }));
    }
    if (o.kind === 'video') {
      /* The poster (the first frame, made by the server) shows before it plays. */
      const attrs = { controls: true, preload: 'metadata', playsinline: true, src: url, 'aria-label': `Your video ${what}` };
      const poster = safeUrl(o.thumbnail_url);
      if (poster) attrs.poster = poster;
      return el('div', { class: 'output' },
        el('video', attrs),
        el('a', { href: url, download: o.filename || true, class: 'small', text: 'Download' }));
    }
    if (o.kind === 'image' || o.kind === undefined) {
      const thumb = safeUrl(o.thumbnail_url) || url;
      return el('a', { class: 'output thumb', href: url, target: '_blank', rel: 'noopener' },
        el('img', { src: thumb, alt: `Your image ${what}`.trim(), decoding: 'async' }),
        el('span', { class: 'small', text: 'Open full size' }));
    }
    return el('a', { class: 'output', href: url, download: o.filename || true, text: `Download ${o.filename || 'result'}` });
  }

  /* The card's action for its error: {text, quality} or null. */
  function errorAction(job) {
    const e = job.view && job.view.error;
    if (!e || !job.params) return null;
    if (e.action === 'REDUCE_QUALITY') {
      const lower = lowerQuality(findFunction(job.function), job.quality);
      return lower ? { text: `Try ${lower.label} quality`, quality: lower.key, label: lower.label } : null;
    }
    if (e.action === 'RETRY')
      return { text: 'Try again', quality: job.quality, label: job.view.quality_label || job.qualityLabel };
    return null;
  }

  function renderError(job) {
    const v = job.view;
    const box = job.ui.error;
    const e = v && v.status === 'failed' ? (v.error || { message: 'This job did not finish.' }) : null;
    const act = e ? errorAction(job) : null;
    const key = e ? JSON.stringify([e, act]) : '';
    if (key === job.ui.errorKey) return;
    job.ui.errorKey = key;
    box.hidden = !e;
    if (!e) {
      box.replaceChildren();
      return;
    }
    const note = el('p', { class: 'action-error', role: 'alert', hidden: true });
    const children = [
      el('p', { class: 'error-msg', text: e.message || '' }),
      e.suggestion ? el('p', { class: 'error-suggestion', text: e.suggestion }) : null,
    ];
    if (act) {
      const b = el('button', { type: 'button', class: 'primary', text: act.text });
      b.addEventListener('click', () => resubmit(job, act, b, note));
      children.push(b);
    }
    children.push(note);
    box.replaceChildren(...children.filter(Boolean));
  }

  async function resubmit(job, act, button, note) {
    button.disabled = true;
    note.hidden = true;
    const res = await submitJob({
      function: job.function, quality: act.quality, qualityLabel: act.label, params: job.params,
    });
    button.disabled = false;
    if (res.ok || res.status === 401) return;
    const e = res.data && res.data.error;
    note.textContent = e ? [e.message, e.suggestion].filter(Boolean).join(' ')
      : "Can't reach the Function Runner. Please try again.";
    note.hidden = false;
  }

  async function cancelJob(job) {
    job.ui.cancel.disabled = true;
    const { status, data } = await api('POST', `/api/jobs/${encodeURIComponent(job.id)}/cancel`);
    job.ui.cancel.disabled = false;
    if (status === 200 && data && data.job_id) applyView(data);
    else if (status === 0) banner("Can't reach the Function Runner to cancel. Please try again.");
    /* 409: it finished meanwhile; its final state comes on the stream. */
  }

  function updateCounts() {
    const live = state.jobs.filter((j) => j.view && !TERMINAL.has(j.view.status)).length;
    $('live-count').textContent = live ? `${live} in progress` : '';
    $('empty').hidden = state.jobs.length > 0;
  }

  /* A newer view of a job, from the stream or a request. */
  function applyView(view) {
    const job = state.jobs.find((j) => j.id === view.job_id);
    if (!job) return;
    const was = job.view ? job.view.status : null;
    /* A late answer never takes a finished job back. */
    if (was && TERMINAL.has(was) && !TERMINAL.has(view.status)) return;
    job.view = view;
    job.viewAt = Date.now();
    renderCard(job);
    if (was !== view.status && TERMINAL.has(view.status)) {
      const what = view.status === 'completed' ? (view.message || 'done')
        : view.status === 'failed' ? (view.error && view.error.message) || "didn't finish"
          : 'cancelled';
      announce(`${cardTitle(job)}: ${what}`);
      updateCounts();
      scheduleStream();
    } else if (was !== view.status) {
      updateCounts();
    }
  }

  /* ---- the one event stream ---- */

  function liveIds() {
    return state.jobs.filter(isLive).slice(0, MAX_LIVE).map((j) => j.id);
  }

  function scheduleStream() {
    clearTimeout(state.streamTimer);
    state.streamTimer = setTimeout(syncStream, 0);
  }

  function closeStream() {
    if (state.source) state.source.close();
    state.source = null;
    state.sourceKey = '';
  }

  /* (Re)opens the stream when the set of live jobs changed; closes it when empty. */
  function syncStream() {
    const ids = liveIds();
    const key = ids.join(',');
    if (state.source && key === state.sourceKey) return;
    closeStream();
    if (ids.length === 0) return;
    const es = new EventSource(`/api/events?jobs=${ids.map(encodeURIComponent).join(',')}`);
    state.source = es;
    state.sourceKey = key;
    const onEvent = (ev) => {
      let view;
      try {
        view = JSON.parse(ev.data);
      } catch (e) {
        return;
      }
      if (view && view.job_id) applyView(view);
    };
    es.addEventListener('state', onEvent);
    es.addEventListener('progress', onEvent);
    es.addEventListener('open', () => { if (es === state.source) banner(''); });
    es.addEventListener('error', () => {
      if (es !== state.source) return;
      if (es.readyState === EventSource.CLOSED) {
        /* Refused (a job the server no longer knows, too many streams): re-read, retry. */
        closeStream();
        refreshSoon();
      } else if (liveIds().length > 0) {
        banner('Reconnecting to the Function Runner…');
      }
    });
  }

  function refreshSoon() {
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(refreshAll, RETRY_MS);
  }

  /* Reads the view of every card not known to be finished, then syncs the stream. */
  async function refreshAll() {
    const epoch = state.epoch;
    const todo = state.jobs.filter(isLive);
    let unreachable = false;
    await Promise.all(todo.map(async (job) => {
      const { status, data } = await api('GET', `/api/jobs/${encodeURIComponent(job.id)}`);
      if (epoch !== state.epoch) return;
      if (status === 200 && data && data.job_id) applyView(data);
      else if (status === 404) removeJob(job); /* the server no longer has it */
      else unreachable = true;
    }));
    if (epoch !== state.epoch) return;
    if (unreachable) {
      banner("Can't reach the Function Runner. Trying again…");
      refreshSoon();
      return;
    }
    banner('');
    scheduleStream();
  }

  /* Finished cards need one look after a reload; live ones get it from the stream too. */
  async function loadRestored() {
    const epoch = state.epoch;
    await Promise.all(state.jobs.filter((j) => !j.view).map(async (job) => {
      const { status, data } = await api('GET', `/api/jobs/${encodeURIComponent(job.id)}`);
      if (epoch !== state.epoch) return;
      if (status === 200 && data && data.job_id) applyView(data);
      else if (status === 404) removeJob(job);
    }));
    if (epoch !== state.epoch) return;
    if (state.jobs.some((j) => !j.view)) {
      banner("Can't reach the Function Runner. Trying again…");
      refreshSoon();
      return;
    }
    scheduleStream();
  }

  /* ---- the panel ---- */

  function setPanelOpen(open) {
    $('panel-toggle').setAttribute('aria-expanded', open ? 'true' : 'false');
    $('panel-body').hidden = !open;
    try {
      localStorage.setItem(PANEL_KEY, open ? '0' : '1');
    } catch (e) {
      /* not remembered */
    }
  }

  function setupPanel() {
    let collapsed = false;
    try {
      collapsed = localStorage.getItem(PANEL_KEY) === '1';
    } catch (e) {
      collapsed = false;
    }
    setPanelOpen(!collapsed);
    $('panel-toggle').addEventListener('click', () =>
      setPanelOpen($('panel-toggle').getAttribute('aria-expanded') !== 'true'));
  }

  /* Time left counts down between events. */
  function tick() {
    for (const j of state.jobs) {
      if (!j.view || TERMINAL.has(j.view.status)) continue;
      j.ui.meta.textContent = metaText(j);
      j.ui.meta.hidden = !j.ui.meta.textContent;
    }
  }

  /* ---- signing in (only where the server has keys) ---- */

  /* Asks the server whether it needs a key, then starts the page or asks for one. */
  async function start() {
    const epoch = state.epoch;
    const { status, data } = await api('GET', '/api/session');
    if (epoch !== state.epoch) return;
    if (status === 0) {
      $('catalog-status').textContent = "Can't reach the Function Runner. Trying again…";
      state.startTimer = setTimeout(start, RETRY_MS);
      return;
    }
    const s = status === 200 && data ? data : {}; /* a server without sessions has no keys */
    if (s.keys_required && !s.signed_in) showSignIn();
    else startApp(s.signed_in ? s : null);
  }

  /* The page as it works without keys, for user (null: no key needed). */
  function startApp(user) {
    stopApp(); /* nothing of a previous key stays */
    state.user = user;
    showWho();
    $('signin').hidden = true;
    $('app').hidden = false;
    restore();
    updateCounts();
    loadCatalog();
    loadRestored();
  }

  /* Drops the cards, catalog and stream; the jobs stay remembered for the next sign-in. */
  function stopApp() {
    state.epoch++;
    for (const t of [state.catalogTimer, state.refreshTimer, state.streamTimer, state.startTimer])
      clearTimeout(t);
    closeStream();
    state.jobs = [];
    $('jobs').replaceChildren();
    state.catalog = null;
    $('form').hidden = true;
    $('catalog-status').textContent = 'Loading what you can make…';
    $('catalog-status').hidden = false;
    banner('');
    updateCounts();
  }

  function showWho() {
    const u = state.user;
    $('who').hidden = !u;
    $('who-name').textContent = u ? u.name || (u.scope === 'operator' ? 'an operator' : 'you') : '';
  }

  function showSignIn() {
    stopApp();
    state.user = null;
    showWho();
    $('app').hidden = true;
    $('signin').hidden = false;
    $('signin-error').hidden = true;
    $('signin-key').removeAttribute('aria-invalid');
    $('signin-key').value = '';
    $('signin-key').focus();
  }

  /* A request answered 401: the key is needed, or no longer works. */
  function needSignIn() {
    if ($('signin').hidden) showSignIn();
  }

  function signInError(text) {
    $('signin-error').textContent = text;
    $('signin-error').hidden = false;
    $('signin-key').setAttribute('aria-invalid', 'true');
    $('signin-key').focus();
    $('signin-key').select();
  }

  async function onSignIn(ev) {
    ev.preventDefault();
    if (state.signingIn) return;
    const input = $('signin-key');
    const key = input.value.trim();
    $('signin-error').hidden = true;
    input.removeAttribute('aria-invalid');
    if (!key) {
      signInError('Paste your key first, then press Sign in.');
      return;
    }
    const button = $('signin-submit');
    state.signingIn = true;
    button.disabled = true;
    button.textContent = 'Signing in…';
    const { status, data } = await api('POST', '/api/session', { key });
    state.signingIn = false;
    button.disabled = false;
    button.textContent = 'Sign in';
    if (status === 200 && data && data.signed_in) {
      input.value = '';
      startApp(data);
      return;
    }
    const e = data && data.error;
    if (status === 401 || status === 400)
      signInError('That key does not work. Check it, or ask your operator for a new one.');
    else if (status === 0)
      signInError("Can't reach the Function Runner. Check that it is running, then try again.");
    else
      signInError(e ? [e.message, e.suggestion].filter(Boolean).join(' ') : 'Something went wrong. Please try again.');
  }

  async function onSignOut() {
    const button = $('signout');
    button.disabled = true;
    const { status } = await api('DELETE', '/api/session');
    button.disabled = false;
    if (status === 0) {
      banner("Can't reach the Function Runner to sign out. Please try again.");
      return;
    }
    showSignIn();
    announce('Signed out.');
    /* Should the server have no keys any more, the page needs none. */
    const epoch = state.epoch;
    const s = await api('GET', '/api/session');
    if (epoch === state.epoch && s.status === 200 && s.data && s.data.keys_required === false)
      startApp(null);
  }

  function init() {
    setupPanel();
    $('form').addEventListener('submit', onSubmit);
    $('function').addEventListener('change', buildFunctionForm);
    $('quality').addEventListener('change', () => clearFieldError('quality'));
    $('signin-form').addEventListener('submit', onSignIn);
    $('signout').addEventListener('click', onSignOut);
    start();
    setInterval(tick, 1000);
  }

  init();
})();
