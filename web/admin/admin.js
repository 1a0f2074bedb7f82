// admin.js - the operator page: polls /admin/data/* (metrics in the
// Prometheus text format, models, operator events) every 2 s and draws
// live charts with uPlot (web/vendor/uplot, vendored by scripts/vendor-uplot).
// Operators see model names here; users never load this page.
'use strict';

(() => {
  const POLL_MS = 2000;
  const KEEP = 180;        // samples kept per chart: 6 minutes
  const WINDOW_S = 30;     // latency quantiles over this window
  const COLORS = ['#0b5cad', '#c2410c', '#15803d', '#7e22ce', '#b91c1c', '#0e7490', '#a16207',
    '#be185d', '#4d7c0f', '#1e3a8a', '#9a3412', '#334155'];
  const MAX_SERIES = 24;   // per chart: the busiest ones

  const $ = (id) => document.getElementById(id);
  const times = [];        // seconds, shared by every chart
  const charts = {};       // key -> {el, unit, names: [], data: Map name -> values[], plot}
  const history = [];      // {t, buckets: Map function -> Map le -> cumulative count}
  let prev = null;         // the previous scrape: {t, completed: Map}
  const stats = { scrapes: 0, errors: 0, lastError: '' };
  window.__admin = stats;

  // ---- the Prometheus text format ----

  function parseLabels(s) {
    const out = {};
    let i = 0;
    while (i < s.length) {
      const eq = s.indexOf('=', i);
      if (eq < 0) break;
      const key = s.slice(i, eq).trim();
      let j = eq + 2; // after ="
      let v = '';
      while (j < s.length && s[j] !== '"') {
        if (s[j] === '\\' && j + 1 < s.length) {
          const c = s[j + 1];
          v += c === 'n' ? '\n' : c;
          j += 2;
        } else {
          v += s[j++];
        }
      }
      out[key] = v;
      i = j + 1;
      if (s[i] === ',') i++;
    }
    return out;
  }

  function parseMetrics(text) {
    const samples = [];
    for (const line of text.split('\n')) {
      if (line === '' || line[0] === '#') continue;
      const brace = line.indexOf('{');
      const space = line.lastIndexOf(' ');
      let name;
      let labels = {};
      if (brace >= 0 && brace < space) {
        name = line.slice(0, brace);
        labels = parseLabels(line.slice(brace + 1, line.lastIndexOf('}')));
      } else {
        name = line.slice(0, space);
      }
      samples.push({ name, labels, value: Number(line.slice(space + 1)) });
    }
    return samples;
  }

  // Sums samples of `name` by key(labels); filter(labels) keeps some.
  function sumBy(samples, name, key, filter) {
    const m = new Map();
    for (const s of samples) {
      if (s.name !== name || (filter && !filter(s.labels))) continue;
      const k = key(s.labels);
      m.set(k, (m.get(k) || 0) + s.value);
    }
    return m;
  }

  // As Prometheus' histogram_quantile: linear within the bucket.
  function quantile(q, cum) {
    const les = [...cum.keys()].sort((a, b) => a - b);
    if (les.length === 0) return null;
    const total = cum.get(les[les.length - 1]);
    if (!(total > 0)) return null;
    const rank = q * total;
    let lowerLe = 0;
    let lowerCount = 0;
    for (const le of les) {
      const c = cum.get(le);
      if (c >= rank) {
        if (le === Infinity) return lowerLe;
        return lowerLe + (le - lowerLe) * ((rank - lowerCount) / Math.max(c - lowerCount, 1e-12));
      }
      lowerLe = le;
      lowerCount = c;
    }
    return lowerLe;
  }

  // ---- charts ----

  function fmtBytes(v) {
    if (v == null) return '–';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  }
  function fmtSeconds(v) {
    if (v == null) return '–';
    return v < 1 ? `${(v * 1000).toFixed(v < 0.01 ? 1 : 0)} ms` : `${v.toFixed(2)} s`;
  }
  const FORMATS = { bytes: fmtBytes, seconds: fmtSeconds, rate: (v) => (v == null ? '–' : v.toFixed(2)),
    count: (v) => (v == null ? '–' : String(Math.round(v))) };

  function chart(key, unit) {
    if (!charts[key]) charts[key] = { el: document.querySelector(`[data-chart="${key}"]`), unit, names: [], data: new Map(), plot: null };
    return charts[key];
  }

  // Adds this poll's values (Map name -> value) to chart `key`.
  function push(key, unit, values) {
    const c = chart(key, unit);
    for (const name of values.keys())
      if (!c.data.has(name)) c.data.set(name, new Array(times.length - 1).fill(null));
    for (const [name, arr] of c.data) {
      arr.push(values.has(name) ? values.get(name) : null);
      if (arr.length > KEEP) arr.shift();
    }
  }

  function busiest(c) {
    const score = (arr) => arr.reduce((s, v) => s + (v ? Math.abs(v) : 0), 0);
    return [...c.data.keys()].sort((a, b) => score(c.data.get(b)) - score(c.data.get(a)) || a.localeCompare(b))
      .slice(0, MAX_SERIES).sort();
  }

  function draw(c) {
    const names = busiest(c);
    const data = [times.slice(), ...names.map((n) => c.data.get(n))];
    const width = Math.max(300, c.el.clientWidth || 560);
    if (c.plot && names.join('\u0000') === c.names.join('\u0000') && c.plot.width === width) {
      c.plot.setData(data);
      return;
    }
    if (c.plot) c.plot.destroy();
    c.names = names;
    const fmt = FORMATS[c.unit];
    c.plot = new uPlot({
      width, height: 220,
      scales: { x: { time: true }, y: { range: (u, min, max) => [Math.min(0, min), Math.max(max, c.unit === 'count' ? 1 : 1e-9) * 1.1] } },
      axes: [{}, { values: (u, ticks) => ticks.map(fmt), size: 70,
        incrs: c.unit === 'count' ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] : undefined }],
      series: [{}, ...names.map((n, i) => ({ label: n, stroke: COLORS[i % COLORS.length], width: 1.5,
        value: (u, v) => fmt(v), spanGaps: false,
        dash: n.startsWith('budget') ? [6, 4] : n.startsWith('measured') ? [2, 3] : undefined }))],
      legend: { live: true },
    }, data, c.el);
  }

  // ---- what each poll adds ----

  function gpuValues(samples) {
    const v = new Map();
    for (const [metric, word] of [['fnrun_gpu_memory_budget_bytes', 'budget'],
      ['fnrun_gpu_memory_reserved_bytes', 'reserved'], ['fnrun_gpu_memory_measured_bytes', 'measured']]) {
      for (const [gpu, val] of sumBy(samples, metric, (l) => l.gpu))
        v.set(`${word} GPU ${gpu}`, val);
    }
    return v;
  }

  function rateValues(samples, t) {
    const completed = sumBy(samples, 'fnrun_jobs_completed_total', (l) => l.function);
    const v = new Map();
    if (prev) {
      const dt = t - prev.t;
      for (const [fn, n] of completed)
        if (dt > 0) v.set(fn, Math.max(0, n - (prev.completed.get(fn) || 0)) / dt);
    }
    prev = { t, completed };
    return v;
  }

  function latencyValues(samples, t) {
    const buckets = new Map();
    for (const s of samples) {
      if (s.name !== 'fnrun_job_end_to_end_seconds_bucket' || s.labels.status !== 'completed') continue;
      const fn = s.labels.function;
      if (!buckets.has(fn)) buckets.set(fn, new Map());
      const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
      const m = buckets.get(fn);
      m.set(le, (m.get(le) || 0) + s.value);
    }
    history.push({ t, buckets });
    while (history.length > 2 && t - history[1].t >= WINDOW_S) history.shift();
    const old = history[0];
    const v = new Map();
    for (const [fn, m] of buckets) {
      const base = old !== history[history.length - 1] ? old.buckets.get(fn) : null;
      const delta = new Map();
      for (const [le, n] of m) delta.set(le, n - (base ? base.get(le) || 0 : 0));
      v.set(`p50 ${fn}`, quantile(0.5, delta));
      v.set(`p95 ${fn}`, quantile(0.95, delta));
    }
    return v;
  }

  function runnerValues(samples) {
    const v = new Map();
    for (const [k, n] of sumBy(samples, 'fnrun_runners', (l) => `${l.model} ${l.state}`))
      if (n > 0) v.set(k, n);
    return v;
  }

  // ---- tables ----

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
  }

  function showModels(models, samples) {
    const byState = sumBy(samples, 'fnrun_runners', (l) => `${l.model}\u0000${l.state}`);
    const body = $('models').querySelector('tbody');
    body.replaceChildren();
    for (const m of models) {
      const tr = document.createElement('tr');
      cell(tr, m.id);
      cell(tr, m.function);
      cell(tr, m.quality);
      cell(tr, m.state);
      for (const st of ['starting', 'ready', 'busy', 'draining', 'stopping'])
        cell(tr, String(byState.get(`${m.id}\u0000${st}`) || 0), 'num');
      cell(tr, String(m.queued ?? 0), 'num');
      body.appendChild(tr);
    }
  }

  function showEvents(events) {
    const body = $('events').querySelector('tbody');
    body.replaceChildren();
    for (const e of events.slice(0, 50)) {
      const tr = document.createElement('tr');
      cell(tr, new Date(e.time_ms).toLocaleTimeString());
      cell(tr, e.kind.replace('_', ' '), `kind-${e.kind}`);
      cell(tr, e.model);
      cell(tr, e.other || '');
      body.appendChild(tr);
    }
    $('events-empty').hidden = events.length > 0;
  }

  // ---- polling ----

  async function get(path, as) {
    const r = await fetch(path, { cache: 'no-store', credentials: 'same-origin' });
    if (!r.ok) throw new Error(`${path} answered ${r.status}`);
    return as === 'json' ? r.json() : r.text();
  }

  async function poll() {
    try {
      const [text, models, events] = await Promise.all([get('/admin/data/metrics', 'text'),
        get('/admin/data/models', 'json'), get('/admin/data/events', 'json')]);
      const samples = parseMetrics(text);
      const t = Date.now() / 1000;
      times.push(t);
      if (times.length > KEEP) times.shift();
      push('gpu', 'bytes', gpuValues(samples));
      push('rate', 'rate', rateValues(samples, t));
      push('latency', 'seconds', latencyValues(samples, t));
      push('queue', 'count', sumBy(samples, 'fnrun_jobs_queued', (l) => l.function));
      push('runners', 'count', runnerValues(samples));
      for (const c of Object.values(charts)) draw(c);
      showModels(models.models || [], samples);
      showEvents(events.events || []);
      stats.scrapes++;
      const nrun = [...sumBy(samples, 'fnrun_runners', () => 'all').values()][0] || 0;
      $('status').textContent = `Updated ${new Date().toLocaleTimeString()} — ${(models.models || []).length} models, ${nrun} runners`;
      $('status').classList.remove('status-error');
    } catch (e) {
      stats.errors++;
      stats.lastError = String(e.message || e);
      $('status').textContent = `Could not update: ${stats.lastError}`;
      $('status').classList.add('status-error');
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
