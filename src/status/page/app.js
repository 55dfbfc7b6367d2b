// piha status page.
//
// Polls `api/v1/status` (relative, so the page works behind any prefix) and
// renders it with plain DOM calls. Rules this file keeps:
//  * Everything from the API goes into the DOM through textContent or
//    attributes set one by one, never innerHTML: names and messages come from
//    peers and must not be able to inject markup.
//  * When the API cannot be reached the last data stays on screen and a banner
//    says so; the page is never blank.
//  * Relative times are computed against the node's clock
//    (`generated_at_ms`), not the browser's: a Pi without a real-time clock
//    may be minutes off from the phone looking at it.
'use strict';

(function () {
  const POLL_MS = 2000;
  const FETCH_TIMEOUT_MS = 4000;
  const HOUR_MS = 3600 * 1000;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const state = {
    data: null,          // last good response
    receivedAt: 0,       // browser clock when `data` arrived
    failing: false,      // last poll failed
    lastError: '',
    openEvents: new Set(), // keys of events whose <details> the user opened
    rendered: {},        // section name -> JSON of what it last drew
  };

  // ---------------------------------------------------------------- helpers

  const $ = (id) => document.getElementById(id);

  // el('div', {class: 'x', text: 'y', data: {a: 1}}, child...) — builds an
  // element without ever parsing HTML.
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    applyProps(node, props);
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svg(tag, props) {
    const node = document.createElementNS(SVG_NS, tag);
    applyProps(node, props);
    return node;
  }

  function svgText(props, text) {
    const node = svg('text', props);
    node.textContent = text;
    return node;
  }

  function applyProps(node, props) {
    if (!props) return;
    for (const [key, value] of Object.entries(props)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === 'text') node.textContent = String(value);
      else if (key === 'data') {
        for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
      } else node.setAttribute(key, String(value));
    }
  }

  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const arr = (v) => (Array.isArray(v) ? v : []);
  const str = (v, fallback = '') => (v === null || v === undefined ? fallback : String(v));

  // Only http(s) links from peers become clickable; anything else
  // (javascript:, data:) would run in this page's origin.
  function safeHref(url) {
    try {
      const u = new URL(String(url), location.href);
      return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  // The node's "now": its clock at the last response plus the time since.
  function serverNow() {
    if (!state.data || !isNum(state.data.generated_at_ms)) return Date.now();
    return state.data.generated_at_ms + (Date.now() - state.receivedAt);
  }

  // ------------------------------------------------------------- formatting

  function fmtNum(v, digits) {
    return v.toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  function fmtPercent(v) {
    if (!isNum(v)) return '–';
    return (v === 0 || v >= 10 ? fmtNum(v, 0) : fmtNum(v, 1)) + '%';
  }

  function fmtBytes(n) {
    if (!isNum(n)) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    const digits = i === 0 || Math.abs(n) >= 100 ? 0 : Math.abs(n) >= 10 ? 1 : 1;
    return fmtNum(n, digits) + '\u00a0' + units[i];
  }

  const fmtRate = (n) => (isNum(n) ? fmtBytes(n) + '/s' : '–');

  function fmtTemp(c) {
    return isNum(c) ? fmtNum(c, 1) + '\u00a0°C' : '–';
  }

  // 12 d 5 h / 2 h 4 min / 4 min 10 s / 12 s — two units are enough.
  function fmtDuration(seconds) {
    if (!isNum(seconds)) return '–';
    let s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d > 0) return d + '\u00a0d ' + h + '\u00a0h';
    if (h > 0) return h + '\u00a0h ' + m + '\u00a0min';
    if (m > 0) return m + '\u00a0min ' + s + '\u00a0s';
    return s + '\u00a0s';
  }

  // Same, tighter, for the small member cards: 12d 5h / 2h 4m / 4m 10s.
  function fmtDurationShort(seconds) {
    return fmtDuration(seconds).replace(/\u00a0(d|h|s)\b/g, '$1').replace(/\u00a0min\b/g, 'm');
  }

  function fmtAgo(ms) {
    if (!isNum(ms)) return '–';
    const s = Math.round(ms / 1000);
    if (s < 2) return 'just now';
    if (s < 60) return s + '\u00a0s ago';
    const m = Math.floor(s / 60);
    if (m < 60) return m + '\u00a0min ago';
    const h = Math.floor(m / 60);
    if (h < 48) return h + '\u00a0h ' + (m % 60) + '\u00a0min ago';
    return Math.floor(h / 24) + '\u00a0d ago';
  }

  const fmtClock = (ms) => new Date(ms).toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' });
  const fmtDateTime = (ms) => new Date(ms).toLocaleString();

  // A <time> whose text ("4 min ago") is kept current by tick().
  function relTime(atMs, prefix) {
    if (!isNum(atMs)) return el('span', { class: 'muted', text: (prefix || '') + 'unknown' });
    const node = el('time', {
      class: 'rel',
      datetime: new Date(atMs).toISOString(),
      title: fmtDateTime(atMs),
      data: { at: atMs, prefix: prefix || '' },
    });
    updateRel(node);
    return node;
  }

  function updateRel(node) {
    node.textContent = node.dataset.prefix + fmtAgo(serverNow() - Number(node.dataset.at));
  }

  function tempLevel(c) {
    if (!isNum(c)) return 'none';
    if (c >= 80) return 'hot';   // the Pi throttles at 80 °C
    if (c >= 70) return 'warm';
    return 'ok';
  }

  function fillLevel(pct) {
    if (!isNum(pct)) return 'ok';
    return pct >= 90 ? 'hot' : pct >= 75 ? 'warm' : 'ok';
  }

  // Horizontal meter; the width is set through a style property, not markup.
  function bar(pct, level) {
    const fill = el('span', { class: 'bar-fill', data: { level: level || fillLevel(pct) } });
    fill.style.width = Math.max(0, Math.min(100, isNum(pct) ? pct : 0)) + '%';
    return el('span', { class: 'bar', 'aria-hidden': 'true' }, fill);
  }

  function badge(kind, value, text) {
    return el('span', { class: 'badge', data: { [kind]: value } }, text);
  }

  // Redraw a section only when its input changed: keeps <details> and text
  // selection alive across polls and spares the Pi's browser some work.
  function changed(name, input) {
    const key = JSON.stringify(input);
    if (state.rendered[name] === key) return false;
    state.rendered[name] = key;
    return true;
  }

  // One bad field must not take the whole page down.
  function safely(name, fn) {
    try {
      fn();
    } catch (err) {
      delete state.rendered[name]; // try again with the next response
      console.error('piha: could not render ' + name, err);
    }
  }

  // ---------------------------------------------------------------- header

  function renderHeader(d) {
    const node = d.node || {};
    const cluster = d.cluster || {};
    const host = str(node.hostname, location.hostname);
    $('self-hostname').textContent = host;
    $('cluster-name').textContent = str(cluster.name, 'cluster');

    const members = arr(d.members);
    const down = members.filter((m) => m.state === 'down').length;
    document.title = host + ' · ' + str(cluster.name, 'piha') + (down ? ' (' + down + ' down)' : '');

    const facts = $('facts');
    facts.replaceChildren();
    const fact = (label, ...value) => facts.append(el('div', { class: 'fact' }, el('dt', { text: label }), el('dd', null, ...value)));
    fact('Address', el('span', { class: 'mono', text: str(node.address, '–') }));
    fact('Version', 'v' + str(node.version, '?'));
    fact('piha uptime', isNum(node.started_at_ms) ? el('span', { class: 'dur', data: { since: node.started_at_ms } }, fmtDuration((serverNow() - node.started_at_ms) / 1000)) : '–');
    const configTitle = [str(cluster.config_hash), str(cluster.config_path),
      isNum(cluster.config_loaded_at_ms) ? 'loaded ' + fmtDateTime(cluster.config_loaded_at_ms) : ''].filter(Boolean).join('\n');
    fact('Config', el('span', { class: 'mono', title: configTitle, text: str(cluster.config_hash, '–').slice(0, 12) }));
    // The notes demo app this node serves, where visitors reach it.
    const notesHref = safeHref(node.notes_url);
    if (notesHref) fact('Notes demo app', el('a', { class: 'mono', href: notesHref, data: { testid: 'notes-link' } }, notesHref));

    const up = members.filter((m) => m.state === 'up').length;
    $('health-up').textContent = String(up);
    $('health-total').textContent = String(members.length);
    // A member that left on purpose is not a problem; one that is down is.
    const expected = members.filter((m) => m.state !== 'left').length;
    const health = expected === 0 ? 'unknown' : up >= expected ? 'ok' : up * 2 > expected ? 'degraded' : 'bad';
    $('health').dataset.health = health;
    $('health-label').textContent = members.length === 1 ? 'member up' : 'members up';
    $('health-vip').replaceChildren(cluster.vip ? el('span', null, 'Virtual IP ', el('span', { class: 'mono', text: cluster.vip })) : '');

    $('footer-version').textContent = 'piha v' + str(node.version, '?') + ' on ' + host;
    $('footer-config').replaceChildren(cluster.config_path ? el('span', { class: 'mono', text: cluster.config_path }) : '');
  }

  // --------------------------------------------------------------- members

  const STATE_LABEL = { up: 'up', down: 'down', left: 'left', unknown: 'unknown' };

  function sortMembers(members) {
    return members.slice().sort((a, b) => {
      if (!!a.is_self !== !!b.is_self) return a.is_self ? -1 : 1;
      return str(a.hostname).localeCompare(str(b.hostname), undefined, { numeric: true });
    });
  }

  function renderMembers(d) {
    const members = sortMembers(arr(d.members));
    if (!changed('members', members)) return;
    const box = $('members');
    if (members.length === 0) {
      box.replaceChildren(el('p', { class: 'placeholder', text: 'No members known yet.' }));
    } else {
      box.replaceChildren(...members.map(memberCard));
    }
    const counts = {};
    for (const m of members) counts[m.state] = (counts[m.state] || 0) + 1;
    $('cluster-note').textContent = Object.entries(counts).map(([k, n]) => n + ' ' + k).join(' · ');
  }

  function memberCard(m) {
    const st = STATE_LABEL[m.state] ? m.state : 'unknown';
    const name = str(m.hostname, '?');
    const href = safeHref(m.admin_url);
    const title = href ? el('a', { class: 'member-name', href, title: 'Open ' + name + '’s status page' }, name) : el('span', { class: 'member-name', text: name });

    const head = el('div', { class: 'member-head' },
      el('div', { class: 'member-title' }, title, m.is_self ? el('span', { class: 'self-tag', text: 'this node' }) : null),
      badge('state', st, STATE_LABEL[st]));
    const sub = el('div', { class: 'member-sub' },
      el('span', { class: 'mono', text: str(m.address, '–') }),
      m.version ? el('span', { text: 'v' + m.version }) : null);
    const roles = el('ul', { class: 'chips', 'aria-label': 'roles' }, arr(m.roles).map((r) => el('li', { class: 'chip', text: r })));

    return el('article', { class: 'card member', data: { testid: 'member', hostname: name, state: st } },
      head, sub, roles, memberBody(m, st));
  }

  function memberBody(m, st) {
    const s = m.system;
    if (st === 'up' && s) {
      const metric = (label, value, extra, attrs) => el('div', Object.assign({ class: 'metric' }, attrs || {}),
        el('dt', { text: label }), el('dd', null, value, extra || null));
      return el('dl', { class: 'metrics' },
        metric('CPU', fmtPercent(s.cpu_percent), bar(s.cpu_percent)),
        metric('Memory', fmtPercent(s.memory_percent), bar(s.memory_percent)),
        metric('Temp', isNum(s.temperature_c) ? fmtTemp(s.temperature_c) : el('span', { class: 'muted', title: 'no temperature sensor', text: 'no sensor' }),
          null, { data: { level: tempLevel(s.temperature_c) } }),
        metric('Load', isNum(s.load1) ? fmtNum(s.load1, 2) : '–'),
        metric('Uptime', fmtDurationShort(s.uptime_s)),
        metric('Heard', relTime(m.last_heard_ms)));
    }
    // Not live: say since when, and when we last heard from it.
    const lines = [];
    if (st === 'down') lines.push(el('p', { class: 'down-since' }, 'Down since ', relTime(m.since_ms)));
    else if (st === 'left') lines.push(el('p', { class: 'down-since' }, 'Left the cluster ', relTime(m.since_ms)));
    else if (st === 'unknown') lines.push(el('p', { class: 'down-since', text: 'Never heard from' }));
    else lines.push(el('p', { class: 'down-since', text: 'No system data' }));
    if (isNum(m.last_heard_ms)) lines.push(el('p', { class: 'last-heard' }, 'Last heard ', relTime(m.last_heard_ms)));
    return el('div', { class: 'member-off' }, lines);
  }

  // ------------------------------------------------------------ this node

  const ROLE_LABEL = { not_built: 'not in this build', starting: 'starting', healthy: 'healthy', degraded: 'degraded', failed: 'failed' };

  function renderNode(d) {
    const node = d.node || {};
    const roles = arr(node.roles);
    const services = arr(node.services);
    if (!changed('node', [roles, services])) return;

    $('roles').replaceChildren(...(roles.length ? roles.map((r) => {
      const label = ROLE_LABEL[r.state] || str(r.state, 'unknown');
      return el('li', { class: 'row role', data: { state: str(r.state, 'unknown') } },
        el('div', { class: 'row-main' }, el('span', { class: 'row-name', text: str(r.role, '?') }), badge('role', str(r.state, 'unknown'), label)),
        r.detail ? el('p', { class: 'row-detail', text: r.detail }) : null);
    }) : [el('li', { class: 'placeholder', text: 'No roles assigned to this node.' })]));

    $('services').replaceChildren(...(services.length ? services.map((s) => {
      const restarts = isNum(s.restarts) ? s.restarts : 0;
      return el('li', { class: 'row service', data: { state: str(s.state, 'unknown') } },
        el('div', { class: 'row-main' },
          el('span', { class: 'row-name', text: str(s.name, '?') }),
          badge('service', str(s.state, 'unknown'), str(s.state, 'unknown'))),
        el('p', { class: 'row-detail' },
          isNum(s.since_ms) ? el('span', null, 'since ', relTime(s.since_ms)) : null,
          el('span', { class: restarts > 0 ? 'restarts warn' : 'restarts', text: restarts + (restarts === 1 ? ' restart' : ' restarts') })),
        s.last_error ? el('p', { class: 'row-error', title: 'last error' }, el('span', { class: 'mono', text: String(s.last_error) })) : null);
    }) : [el('li', { class: 'placeholder', text: 'No services reported.' })]));

    const notBuilt = roles.filter((r) => r.state === 'not_built').length;
    $('node-note').textContent = notBuilt ? notBuilt + ' of ' + roles.length + ' roles not in this build' : '';
  }

  // -------------------------------------------------------------- balancer
  //
  // In the spirit of HAProxy's stats page: one panel per front end (the HTTP
  // balancer, then each TCP service) with a line of front-end totals and a
  // table, one row per backend. On a phone the same rows become blocks of
  // labelled values (CSS only; each cell carries its label in data-label), so
  // the page never scrolls sideways and no column hides off-screen.

  const LB_STATE = { UP: 'up', DOWN: 'down', DRAIN: 'drain', MAINT: 'maint' };
  const LB_STATE_WORD = { up: 'up', down: 'down', drain: 'draining', maint: 'in maintenance', unknown: 'unknown' };
  const ALGORITHM_LABEL = { roundrobin: 'round robin', leastconn: 'least connections', source: 'source hash', random2: 'power of two' };
  const REJECT_LABEL = { no_backend: 'no backend', queue_full: 'queue full', queue_timeout: 'queue timeout' };

  const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  // Lookup by a key from the API: "constructor" must not find Object's.
  const own = (map, key) => (typeof key === 'string' && Object.prototype.hasOwnProperty.call(map, key) ? map[key] : undefined);
  const lbState = (s) => own(LB_STATE, s) || 'unknown';

  // 40,211 in full; 12.3 M once the full number stops fitting a column.
  function fmtCount(n) {
    if (!isNum(n)) return '–';
    if (Math.abs(n) < 1e6) return fmtNum(n, 0);
    const [div, unit] = Math.abs(n) >= 1e12 ? [1e12, 'T'] : Math.abs(n) >= 1e9 ? [1e9, 'G'] : [1e6, 'M'];
    const v = n / div;
    return fmtNum(v, Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2) + '\u00a0' + unit;
  }

  function fmtPerSec(n) {
    if (!isNum(n)) return '–';
    return n === 0 ? '0' : fmtNum(n, Math.abs(n) >= 100 ? 0 : 1);
  }

  function fmtMs(v) {
    if (!isNum(v)) return '–';
    if (v >= 1000) return fmtNum(v / 1000, v >= 10000 ? 0 : 1) + '\u00a0s';
    return fmtNum(v, v >= 10 ? 0 : v >= 1 ? 1 : 2) + '\u00a0ms';
  }

  // Hostname -> that member's own status page, to link member backends.
  function memberLinks(d) {
    const links = Object.create(null);
    for (const m of arr(d.members)) {
      const href = m && safeHref(m.admin_url);
      if (href && typeof m.hostname === 'string') links[m.hostname] = href;
    }
    return links;
  }

  function renderBalancer(d) {
    const b = isObj(d.balancer) ? d.balancer : null;
    const links = memberLinks(d);
    if (!changed('balancer', [b, links])) return;
    $('balancer').hidden = !b;
    if (!b) {
      $('frontends').replaceChildren();
      $('balancer-note').textContent = '';
      return;
    }
    const panels = [];
    if (isObj(b.http)) panels.push(httpPanel(b.http, links));
    for (const svc of arr(b.tcp)) if (isObj(svc)) panels.push(tcpPanel(svc));
    $('frontends').replaceChildren(...(panels.length ? panels
      : [el('p', { class: 'panel placeholder', text: 'The balancer role is on, but no front end is configured.' })]));

    // "6 backends · 3 up · 1 down · 1 draining · 1 in maintenance"
    const all = [...(isObj(b.http) ? backendsOf(b.http) : []), ...arr(b.tcp).flatMap((s) => (isObj(s) ? backendsOf(s) : []))];
    const counts = {};
    for (const be of all) { const k = lbState(be.state); counts[k] = (counts[k] || 0) + 1; }
    $('balancer-note').textContent = [all.length + (all.length === 1 ? ' backend' : ' backends'),
      ...['up', 'down', 'drain', 'maint', 'unknown'].filter((k) => counts[k]).map((k) => counts[k] + ' ' + LB_STATE_WORD[k])].join(' · ');
  }

  const backendsOf = (fe) => arr(fe.backends).filter(isObj);

  function httpPanel(http, links) {
    const fe = isObj(http.frontend) ? http.frontend : {};
    const rejected = rejections(fe.rejected_total);
    const queued = isNum(fe.queued) ? fe.queued : null;
    return frontendPanel({
      key: 'http', name: 'HTTP', kind: null, fe: http,
      stats: [
        ['Requests', fmtCount(fe.requests_total), null, countTitle(fe.requests_total)],
        ['Open connections', fmtCount(fe.open_connections)],
        ['Queued', fmtCount(queued), queued > 0 ? 'warn' : null],
        rejected,
        ...(fe.panic === true || fe.panic_requests_total > 0 ? [['Panic routing', fe.panic === true ? 'on' : 'off',
          fe.panic === true ? 'bad' : null,
          'no backend is up: requests go to the backends that still answer their checks (with another status), rather than a 503',
          fmtCount(fe.panic_requests_total) + ' requests so far']] : []),
      ],
      cols: HTTP_COLUMNS, links,
    });
  }

  function tcpPanel(svc) {
    return frontendPanel({
      key: str(svc.name, '?'), name: str(svc.name, '?'), kind: 'TCP', fe: svc,
      stats: [
        ['Connections', fmtCount(svc.connections_total), null, countTitle(svc.connections_total)],
        ['Active', fmtCount(svc.active)],
        rejections(svc.rejected_total),
      ],
      cols: TCP_COLUMNS, links: {},
    });
  }

  // HTTP gives rejections by reason, TCP one number. Reasons are only
  // named when they happened.
  function rejections(r) {
    const reasons = isObj(r) ? Object.entries(r).filter(([, n]) => isNum(n) && n > 0) : [];
    const total = isNum(r) ? r : reasons.reduce((sum, [, n]) => sum + n, 0);
    const why = reasons.map(([k, n]) => (own(REJECT_LABEL, k) || k.replace(/_/g, ' ')) + ' ' + fmtCount(n)).join(' · ');
    return ['Rejected', fmtCount(total), total > 0 ? 'warn' : null, null, why];
  }

  const countTitle = (n) => (isNum(n) && Math.abs(n) >= 1e6 ? fmtNum(n, 0) : null);

  function frontendPanel(p) {
    const backends = backendsOf(p.fe);
    const up = backends.filter((be) => be.state === 'UP').length;
    const down = backends.filter((be) => be.state === 'DOWN').length;
    const health = backends.length === 0 || up === 0 ? 'bad' : down > 0 ? 'warn' : 'ok';
    const algo = str(p.fe.algorithm);
    const listen = arr(p.fe.listen).map((a) => el('span', { class: 'mono', text: str(a) }));

    const head = el('header', { class: 'fe-head' },
      el('div', { class: 'fe-title' },
        el('h3', { class: 'fe-name', text: p.name }),
        p.kind ? el('span', { class: 'fe-kind', text: p.kind }) : null,
        algo ? el('span', { class: 'chip', title: 'algorithm: ' + algo, text: own(ALGORITHM_LABEL, algo) || algo }) : null),
      el('span', { class: 'fe-health', data: { level: health } },
        backends.length ? up + ' of ' + backends.length + ' up' : 'no backends'),
      listen.length ? el('p', { class: 'fe-listen' }, 'on ', listen.flatMap((a, i) => (i ? [', ', a] : [a]))) : null);

    const stats = el('dl', { class: 'fe-stats' }, p.stats.map(([label, value, level, title, sub]) =>
      el('div', { class: 'fe-stat', data: level ? { level } : null, title },
        el('dt', { text: label }),
        el('dd', null, value, sub ? el('span', { class: 'fe-stat-sub', text: sub }) : null))));

    const body = backends.length
      ? el('div', { class: 'lb-scroll' }, backendTable(p.key, p.cols, backends, p.links))
      : el('p', { class: 'placeholder', text: 'No backends.' });
    return el('article', { class: 'panel frontend', data: { testid: 'frontend', frontend: p.key } }, head, stats, body);
  }

  // Columns: `head` is the desktop header (under `group` when set, with
  // `title` as its tooltip), `label` the label on a phone (default: head),
  // `cell` the content, `cls` classes for both.
  const HTTP_COLUMNS = [
    { head: 'Weight', cls: 'num', cell: weightCell },
    { head: 'Active', cls: 'num', cell: (be) => countCell(be.active) },
    { group: 'Requests', head: '/s', label: 'Req/s', title: 'requests per second', cls: 'num', cell: (be) => rateCell(be.rate_per_s) },
    { group: 'Requests', head: 'total', label: 'Requests', title: 'requests since start', cls: 'num', cell: (be) => countCell(be.requests_total) },
    ...['2xx', '3xx', '4xx', '5xx'].map((k) => ({
      group: 'Responses', head: k, cls: 'num resp', cell: (be) => countCell(isObj(be.responses) ? be.responses[k] : null, k === '5xx' ? 'bad' : null),
    })),
    { group: 'Errors', head: 'conn', label: 'Conn err', title: 'connection errors', cls: 'num', cell: (be) => countCell(be.connection_errors, 'warn') },
    { group: 'Errors', head: 'retry', label: 'Retries', title: 'retries', cls: 'num', cell: (be) => countCell(be.retries, 'warn') },
    { group: 'Latency', head: 'p50', cls: 'num', cell: (be) => latencyCell(be, 'p50') },
    { group: 'Latency', head: 'p99', cls: 'num', cell: (be) => latencyCell(be, 'p99') },
    { head: 'Last check', cls: 'check-cell', cell: checkCell },
  ];

  const TCP_COLUMNS = [
    { head: 'Weight', cls: 'num', cell: weightCell },
    { group: 'Connections', head: 'active', label: 'Active', cls: 'num', cell: (be) => countCell(be.active) },
    { group: 'Connections', head: 'total', label: 'Total', title: 'connections', cls: 'num', cell: (be) => countCell(be.connections_total) },
    { group: 'Errors', head: 'conn', label: 'Conn err', title: 'connect errors', cls: 'num', cell: (be) => countCell(be.connect_errors, 'warn') },
    { group: 'Errors', head: 'retry', label: 'Retries', title: 'retries', cls: 'num', cell: (be) => countCell(be.retries, 'warn') },
    { group: 'Traffic', head: 'in', label: 'Bytes in', cls: 'num', cell: (be) => fmtBytes(be.bytes_in) },
    { group: 'Traffic', head: 'out', label: 'Bytes out', cls: 'num', cell: (be) => fmtBytes(be.bytes_out) },
    { head: 'Last check', cls: 'check-cell', cell: checkCell },
  ];

  // A column's classes, plus `gs` where a group starts or ends: the table
  // draws a faint divider there.
  function colClass(cols, i) {
    const c = cols[i];
    const prev = cols[i - 1];
    const edge = i > 0 && (c.group || (prev && prev.group)) && (!prev || prev.group !== c.group);
    return c.cls + (edge ? ' gs' : '');
  }

  function backendTable(frontend, cols, backends, links) {
    const thead = tableHead([['Backend', 'be-name'], ['State', 'be-state']], cols);
    const rows = backends.map((be) => backendRow(frontend, cols, be, links));
    return el('table', { class: 'lb-table' }, thead, el('tbody', null, rows));
  }

  // Header: the `lead` cells ([text, class]) and single columns span both
  // rows; grouped columns share a top cell.
  function tableHead(lead, cols) {
    const top = lead.map(([text, cls]) => el('th', { scope: 'col', rowspan: 2, class: cls }, text));
    const sub = [];
    cols.forEach((c, i) => {
      if (!c.group) top.push(el('th', { scope: 'col', rowspan: 2, class: colClass(cols, i), title: c.title || null }, c.head));
      else {
        if (!cols[i - 1] || cols[i - 1].group !== c.group) {
          const span = cols.slice(i).findIndex((o) => o.group !== c.group);
          top.push(el('th', { scope: 'colgroup', colspan: span < 0 ? cols.length - i : span, class: 'group' + (i > 0 ? ' gs' : '') }, c.group));
        }
        sub.push(el('th', { scope: 'col', class: colClass(cols, i), title: c.title || null }, c.head));
      }
    });
    return el('thead', null, el('tr', null, top), sub.length ? el('tr', { class: 'sub' }, sub) : null);
  }

  function backendRow(frontend, cols, be, links) {
    const name = str(be.name, '?');
    const kind = lbState(be.state);
    const address = str(be.address);
    const href = be.source === 'member' ? links[name] : null;
    const source = be.source === 'member' ? 'cluster member' : be.source === 'static' ? 'static backend from the cluster file' : null;
    const nameCell = el('th', { scope: 'row', class: 'be-name' },
      el('span', { class: 'be-line' },
        href ? el('a', { class: 'be-title', href, title: 'Open ' + name + '’s status page', text: name }) : el('span', { class: 'be-title', text: name }),
        be.source ? el('span', { class: 'be-source', title: source, text: str(be.source) }) : null),
      address && address !== name ? el('span', { class: 'be-addr mono', text: address }) : null);
    const stateCell = el('td', { class: 'be-state' },
      badge('lb', kind, str(be.state, 'unknown')),
      isNum(be.since_ms) ? el('span', { class: 'be-since', title: 'since ' + fmtDateTime(be.since_ms) }, 'for ',
        el('span', { class: 'dur', data: { since: be.since_ms } }, fmtDuration((serverNow() - be.since_ms) / 1000))) : null);
    const cells = cols.map((c, i) => el('td', { class: colClass(cols, i), 'data-label': c.label || c.head }, c.cell(be)));
    return el('tr', { class: 'backend', data: { testid: 'backend', frontend, name, state: str(be.state, 'unknown'), lb: kind } },
      nameCell, stateCell, cells);
  }

  // A count; zero is faint so the numbers that matter stand out, and
  // `alarm` ('warn' or 'bad') colours it when it is not zero.
  function countCell(n, alarm) {
    const text = fmtCount(n);
    const level = !isNum(n) ? 'none' : n === 0 ? 'zero' : alarm || null;
    return el('span', { class: 'n', data: level ? { level } : null, title: countTitle(n) }, text);
  }

  function rateCell(n) {
    return el('span', { class: 'n', data: !isNum(n) ? { level: 'none' } : n === 0 ? { level: 'zero' } : null }, fmtPerSec(n));
  }

  // "1", or "2" over "ramping 40%" while slow start holds the weight back.
  function weightCell(be) {
    const w = be.weight;
    const eff = be.effective_weight;
    const ramping = be.state === 'UP' && isNum(w) && isNum(eff) && w > 0 && eff < w;
    if (!ramping) return el('span', { class: 'n', text: isNum(w) ? fmtNum(w, 0) : '–' });
    const pct = Math.max(0, Math.round((100 * eff) / w));
    return [el('span', { class: 'n', text: fmtNum(w, 0) }),
      el('span', { class: 'ramp', title: 'slow start: effective weight ' + fmtNum(eff, 2) + ' of ' + fmtNum(w, 0) }, 'ramping ' + pct + '%', bar(pct, 'ramp'))];
  }

  function latencyCell(be, key) {
    const l = isObj(be.latency_ms) ? be.latency_ms : null;
    if (!l) return el('span', { class: 'n', data: { level: 'none' }, title: 'no requests yet', text: '–' });
    return el('span', { class: 'n', title: 'p50 ' + fmtMs(l.p50) + ' · p90 ' + fmtMs(l.p90) + ' · p99 ' + fmtMs(l.p99) }, fmtMs(l[key]));
  }

  function checkCell(be) {
    const ok = be.last_check_ok === true ? 'ok' : be.last_check_ok === false ? 'failed' : 'unknown';
    if (!be.last_check) return el('span', { class: 'check', data: { ok: 'unknown' }, text: 'not checked yet' });
    return el('span', { class: 'check', data: { ok }, title: ok === 'unknown' ? null : 'last check ' + (ok === 'ok' ? 'passed' : 'failed') },
      el('span', { class: 'check-icon', 'aria-hidden': 'true', text: ok === 'ok' ? '✓' : ok === 'failed' ? '✕' : '?' }),
      el('span', { class: 'check-text', text: str(be.last_check) }));
  }

  // -------------------------------------------------------------- postgres
  //
  // The pooler on this node: its PostgreSQL servers as the prober sees them
  // (role, WAL position, lag) and its pools, in the balancer's table style
  // (the same phone layout: rows become blocks of labelled values).

  const PG_ROLE = { primary: 'primary', standby: 'standby', down: 'down' };
  const pgRole = (r) => own(PG_ROLE, r) || 'down';

  function renderPostgres(d) {
    const p = isObj(d.pooler) ? d.pooler : null;
    if (!changed('postgres', [p])) return;
    $('postgres').hidden = !p;
    if (!p) {
      $('pg-panels').replaceChildren();
      $('postgres-note').textContent = '';
      return;
    }
    const backends = arr(p.backends).filter(isObj);
    const pools = arr(p.pools).filter(isObj);
    $('pg-panels').replaceChildren(pgServersPanel(p, backends), pgPoolsPanel(p, pools));

    // "2 servers · 1 primary · 1 standby · 7 clients · paused"
    const counts = {};
    for (const be of backends) { const r = pgRole(be.role); counts[r] = (counts[r] || 0) + 1; }
    const c = isObj(p.clients) ? p.clients : {};
    const clients = isNum(c.total) ? fmtCount(c.total) + (c.total === 1 ? ' client' : ' clients') : null;
    const paused = p.paused === true ? 'paused' : arr(p.paused_databases).length ? 'paused: ' + arr(p.paused_databases).map((x) => str(x)).join(', ') : null;
    $('postgres-note').textContent = [backends.length + (backends.length === 1 ? ' server' : ' servers'),
      ...['primary', 'standby', 'down'].filter((k) => counts[k]).map((k) => counts[k] + ' ' + k),
      clients, paused].filter(Boolean).join(' · ');
  }

  function pgServersPanel(p, backends) {
    const primaries = backends.filter((be) => be.role === 'primary').length;
    const up = backends.filter((be) => be.role === 'primary' || be.role === 'standby').length;
    const health = primaries === 0 ? 'bad' : up < backends.length ? 'warn' : 'ok';
    const c = isObj(p.clients) ? p.clients : {};
    const paused = p.paused === true;
    const head = el('header', { class: 'fe-head' },
      el('div', { class: 'fe-title' },
        el('h3', { class: 'fe-name', text: 'Pooler' }),
        isNum(p.port) ? el('span', { class: 'fe-kind', text: 'port ' + p.port }) : null,
        p.pool_mode ? el('span', { class: 'chip', title: 'default pool mode', text: str(p.pool_mode) + ' pooling' }) : null,
        paused ? badge('pg', 'paused', 'PAUSED') : null),
      el('span', { class: 'fe-health', data: { level: health } },
        primaries === 0 ? 'no primary' : up + ' of ' + backends.length + ' up'));
    const waiting = isNum(c.waiting) ? c.waiting : null;
    const stats = el('dl', { class: 'fe-stats' }, [
      ['Clients', fmtCount(c.total), null, isNum(c.max) ? 'at most ' + fmtNum(c.max, 0) : null],
      ['Active', fmtCount(c.active)],
      ['Waiting', fmtCount(waiting), waiting > 0 ? 'warn' : null],
      ['Idle', fmtCount(c.idle)],
    ].map(([label, value, level, title]) =>
      el('div', { class: 'fe-stat', data: level ? { level } : null, title },
        el('dt', { text: label }), el('dd', null, value))));
    const body = backends.length
      ? el('div', { class: 'lb-scroll' }, el('table', { class: 'lb-table' },
        tableHead([['Server', 'be-name'], ['Role', 'be-state']], PG_SERVER_COLUMNS),
        el('tbody', null, backends.map(pgServerRow))))
      : el('p', { class: 'placeholder', text: 'No PostgreSQL servers.' });
    return el('article', { class: 'panel frontend', data: { testid: 'pg-servers' } }, head, stats, body);
  }

  const PG_SERVER_COLUMNS = [
    { head: 'WAL position', label: 'LSN', title: 'current WAL LSN (primary) or replayed LSN (standby)', cls: 'lsn', cell: (be) => el('span', { class: 'mono', text: str(be.lsn, '–') }) },
    { head: 'Lag', title: 'replay lag behind the primary', cls: 'num', cell: lagCell },
    { head: 'Running', title: 'queries running on it through the pooler', cls: 'num', cell: (be) => countCell(be.outstanding) },
    { head: 'Routed', title: 'requests routed to it since start', cls: 'num', cell: (be) => countCell(be.routed_total) },
    { head: 'Redisp.', title: 'reads that could not get a connection to it and went to another server', cls: 'num', cell: (be) => countCell(be.redispatched_total) },
    { head: 'Last probe', cls: 'check-cell', cell: probeCell },
  ];

  function pgServerRow(be) {
    const name = str(be.name, '?');
    const role = pgRole(be.role);
    const address = str(be.address);
    const nameCell = el('th', { scope: 'row', class: 'be-name' },
      el('span', { class: 'be-line' }, el('span', { class: 'be-title', text: name })),
      address && address !== name ? el('span', { class: 'be-addr mono', text: address }) : null);
    const cells = PG_SERVER_COLUMNS.map((c, i) => el('td', { class: colClass(PG_SERVER_COLUMNS, i), 'data-label': c.label || c.head }, c.cell(be)));
    return el('tr', { class: 'backend', data: { testid: 'pg-server', name, role, lb: role === 'down' ? 'down' : 'up' } },
      nameCell, el('td', { class: 'be-state' }, badge('pg', role, role)), cells);
  }

  function lagCell(be) {
    if (be.role === 'primary') return el('span', { class: 'n', data: { level: 'zero' }, title: 'the primary', text: '–' });
    if (!isNum(be.lag_bytes)) return el('span', { class: 'n', data: { level: 'none' }, title: 'unknown', text: '–' });
    return el('span', { class: 'n', data: be.lag_bytes === 0 ? { level: 'zero' } : null, title: fmtNum(be.lag_bytes, 0) + ' bytes' }, fmtBytes(be.lag_bytes));
  }

  function probeCell(be) {
    const failed = be.role === 'down' && be.last_error;
    if (failed) {
      return el('span', { class: 'check', data: { ok: 'failed' } },
        el('span', { class: 'check-icon', 'aria-hidden': 'true', text: '✕' }),
        el('span', { class: 'check-text', text: str(be.last_error) }));
    }
    if (!isNum(be.last_ok_ms)) return el('span', { class: 'check', data: { ok: 'unknown' }, text: 'not probed yet' });
    return el('span', { class: 'check', data: { ok: 'ok' }, title: 'last answer ' + fmtDateTime(be.last_ok_ms) },
      el('span', { class: 'check-icon', 'aria-hidden': 'true', text: '✓' }),
      el('span', { class: 'check-text', text: 'answered in ' + fmtMs(be.probe_ms) }));
  }

  function pgPoolsPanel(p, pools) {
    const pausedDbs = arr(p.paused_databases).map((x) => str(x));
    const head = el('header', { class: 'fe-head' },
      el('div', { class: 'fe-title' }, el('h3', { class: 'fe-name', text: 'Pools' })),
      el('span', { class: 'fe-health', data: { level: pools.some((x) => x.waiting > 0) ? 'warn' : 'ok' } },
        pools.length + (pools.length === 1 ? ' pool' : ' pools')));
    const body = pools.length
      ? el('div', { class: 'lb-scroll' }, el('table', { class: 'lb-table' },
        tableHead([['Database', 'be-name'], ['Mode', 'be-state']], PG_POOL_COLUMNS),
        el('tbody', null, pools.map((pool) => pgPoolRow(pool, p.paused === true || pausedDbs.includes(str(pool.database)))))))
      : el('p', { class: 'placeholder', text: 'No pools yet: one opens when a client first logs in.' });
    return el('article', { class: 'panel frontend', data: { testid: 'pg-pools' } }, head, body);
  }

  const sc = (p) => (isObj(p.server_connections) ? p.server_connections : {});
  const PG_POOL_COLUMNS = [
    { head: 'Size', title: 'server connections per server at most', cls: 'num', cell: (p) => countCell(p.size) },
    { group: 'Server connections', head: 'active', label: 'In use', title: 'server connections leased to a client', cls: 'num', cell: (p) => countCell(sc(p).active) },
    { group: 'Server connections', head: 'idle', label: 'Idle', title: 'idle server connections', cls: 'num', cell: (p) => countCell(sc(p).idle) },
    { group: 'Server connections', head: 'opening', label: 'Opening', title: 'being connected and logged in', cls: 'num', cell: (p) => countCell(sc(p).connecting) },
    { group: 'Clients', head: 'all', label: 'Clients', cls: 'num', cell: (p) => countCell(p.clients) },
    { group: 'Clients', head: 'waiting', label: 'Waiting', cls: 'num', cell: (p) => countCell(p.waiting, 'warn') },
    { group: 'Clients', head: 'max wait', label: 'Max wait', title: 'longest wait of a waiting client', cls: 'num', cell: maxWaitCell },
    { group: 'Since start', head: 'xacts', label: 'Xacts', title: 'transactions', cls: 'num', cell: (p) => countCell(p.transactions_total) },
    { group: 'Since start', head: 'queries', label: 'Queries', cls: 'num', cell: (p) => countCell(p.queries_total) },
  ];

  function maxWaitCell(p) {
    if (!isNum(p.max_wait_ms)) return el('span', { class: 'n', data: { level: 'none' }, text: '–' });
    if (p.max_wait_ms === 0) return el('span', { class: 'n', data: { level: 'zero' }, text: '0' });
    return el('span', { class: 'n', data: { level: 'warn' } }, fmtMs(p.max_wait_ms));
  }

  function pgPoolRow(pool, paused) {
    const db = str(pool.database, '?');
    const user = str(pool.user, '?');
    const nameCell = el('th', { scope: 'row', class: 'be-name' },
      el('span', { class: 'be-line' }, el('span', { class: 'be-title', text: db })),
      el('span', { class: 'be-addr', text: 'user ' + user }));
    const mode = str(pool.mode, 'unknown');
    const stateCell = el('td', { class: 'be-state' }, badge('pgmode', mode, mode),
      paused ? el('span', { class: 'be-since' }, badge('pg', 'paused', 'paused')) : null);
    const cells = PG_POOL_COLUMNS.map((c, i) => el('td', { class: colClass(PG_POOL_COLUMNS, i), 'data-label': c.label || c.head }, c.cell(pool)));
    return el('tr', { class: 'backend', data: { testid: 'pg-pool', database: db, user, lb: pool.waiting > 0 ? 'drain' : 'up' } },
      nameCell, stateCell, cells);
  }

  // ------------------------------------------------------------------ vrrp
  //
  // The VRRP instance on this node (drawn above the balancer: it decides
  // whether this node's balancer gets the VIP's traffic). Its priority is
  // the usual answer to "why is this node not master", so a lowered one is
  // shown with the tracked items that lowered it.

  const VRRP_STATE = { initialize: 'initialize', backup: 'backup', master: 'master', fault: 'fault' };
  const vrrpState = (s) => own(VRRP_STATE, s) || 'unknown';
  const VRRP_VERSION = { v2: 'VRRPv2', v3: 'VRRPv3' };
  const VRRP_CHECKSUM = {
    pseudo_header: ['with pseudo-header', 'the VRRPv3 checksum covers the IP pseudo-header, as RFC 9568 says'],
    message_only: ['message only', 'the VRRPv3 checksum covers the VRRP message only, as some older routers send it'],
  };

  // Whole seconds as "1 s"; anything else in ms ("250 ms", "1.5 s").
  const fmtInterval = (ms) => (isNum(ms) && ms >= 1000 && ms % 1000 === 0 ? fmtNum(ms / 1000, 0) + '\u00a0s' : fmtMs(ms));

  // Why the last transition happened, in words (machine.rs `Reason`).
  function vrrpReason(r) {
    if (!isObj(r)) return 'no reason given';
    const from = str(r.from, '?');
    switch (r.kind) {
      case 'started': return 'started';
      case 'owner': return 'owns the address (priority 255)';
      case 'master_down': return 'no advert from the master for the master-down interval';
      case 'master_left': return 'the master left (sent priority 0)';
      case 'preempted': return 'preempted a master of lower priority';
      case 'higher_priority': return 'advert from ' + from + ' with higher priority ' + str(r.priority, '?');
      case 'tie_break': return from + ' has the same priority and a higher address';
      case 'stopped': return 'stopped';
      case 'fault': return 'fault: ' + str(r.why, 'no detail');
      case 'recovered': return 'recovered from a fault';
      default: return str(r.kind, 'unknown').replace(/_/g, ' ');
    }
  }

  function renderVrrp(d) {
    const v = isObj(d.vrrp) ? d.vrrp : null;
    if (!changed('vrrp', [v])) return;
    $('vrrp').hidden = !v;
    if (!v) {
      $('vrrp-panels').replaceChildren();
      $('vrrp-note').textContent = '';
      return;
    }
    $('vrrp-panels').replaceChildren(vrrpPanel(v));
    // "vrid 51 on eth0 · VRRPv3 · multicast"
    $('vrrp-note').textContent = [str(v.name), own(VRRP_VERSION, v.version) || str(v.version), str(v.mode)].filter(Boolean).join(' · ');
  }

  function vrrpPanel(v) {
    const st = vrrpState(v.state);
    const c = isObj(v.counters) ? v.counters : {};
    const tracking = isObj(v.tracking) ? Object.entries(v.tracking).filter(([, t]) => isObj(t)) : [];
    const failing = tracking.filter(([, t]) => t.healthy === false);
    const lowered = isNum(v.effective_priority) && isNum(v.configured_priority) && v.effective_priority < v.configured_priority;

    const head = el('header', { class: 'fe-head' },
      el('div', { class: 'fe-title' },
        el('h3', { class: 'fe-name', text: 'vrid ' + str(v.vrid, '?') }),
        v.interface ? el('span', { class: 'fe-kind', title: 'interface', text: str(v.interface) }) : null,
        v.version ? el('span', { class: 'chip', title: 'protocol version', text: own(VRRP_VERSION, v.version) || str(v.version) }) : null),
      el('span', { class: 'badge vrrp-state', data: { vrrp: st }, title: 'state of this node’s instance' }, str(v.state, 'unknown').toUpperCase()));

    // Lowered: "110" over "of 150: storage −40", in the warning colour.
    const lostBy = failing.filter(([, t]) => isNum(t.weight) && t.weight > 0).map(([name, t]) => name + ' −' + t.weight).join(', ');
    const priority = ['Priority', isNum(v.effective_priority) ? String(v.effective_priority) : '–', lowered ? 'warn' : null,
      lowered ? 'configured ' + v.configured_priority + ', lowered by tracking to ' + v.effective_priority : 'configured priority, not lowered',
      lowered ? 'of ' + v.configured_priority + (lostBy ? ': ' + lostBy : '') : v.configured_priority === 255 ? 'address owner' : null];

    const m = isObj(v.master) ? v.master : null;
    const master = ['Master', m ? el('span', { class: 'mono', text: str(m.address, '?') }) : 'unknown', null, null,
      st === 'master' ? 'this node' : m && isNum(m.priority) ? 'priority ' + m.priority : null];

    const vips = arr(v.vips).map((x) => el('span', { class: 'mono', text: str(x) }));
    const vip = [vips.length === 1 ? 'VIP' : 'VIPs', vips.length ? vips.flatMap((x, i) => (i ? [', ', x] : [x])) : 'none'];

    // Ours, and the master's as learned from its adverts (v3) when it
    // differs or when it is another router's.
    const learned = isNum(v.master_interval_ms) && (st !== 'master' || v.master_interval_ms !== v.interval_ms);
    const interval = ['Interval', fmtInterval(v.interval_ms), null,
      'our advert interval ' + fmtInterval(v.interval_ms) + ', the master’s ' + fmtInterval(v.master_interval_ms),
      learned ? 'master’s ' + fmtInterval(v.master_interval_ms) : null];

    // Drops: the total, and the reasons that happened.
    const dropped = isObj(c.dropped) ? Object.entries(c.dropped).filter(([, n]) => isNum(n) && n > 0) : [];
    const dropTotal = dropped.reduce((sum, [, n]) => sum + n, 0);
    const drops = ['Dropped', fmtCount(dropTotal), dropTotal > 0 ? 'warn' : null, 'adverts that failed a check',
      dropped.map(([k, n]) => k.replace(/_/g, ' ') + ' ' + fmtCount(n)).join(' · ')];

    const stats = el('dl', { class: 'fe-stats' }, [
      priority, master, vip, interval,
      ['Adverts', fmtCount(c.adverts_sent), null, 'adverts sent, and adverts from other routers accepted',
        'sent · ' + fmtCount(c.adverts_received) + ' received'],
      drops,
      isNum(c.connections_reset) && c.connections_reset > 0 ? ['Connections reset', fmtCount(c.connections_reset), null, 'client connections on the VIP reset as it left this node, so their clients retried on the new master at once'] : null,
      isNum(c.io_errors) && c.io_errors > 0 ? ['I/O errors', fmtCount(c.io_errors), 'warn', 'sends, receives or netlink calls that failed'] : null,
    ].filter(Boolean).map(([label, value, level, title, sub]) =>
      el('div', { class: 'fe-stat', data: level ? { level } : null, title },
        el('dt', { text: label }),
        el('dd', null, value, sub ? el('span', { class: 'fe-stat-sub', text: sub }) : null))));

    const t = isObj(v.last_transition) ? v.last_transition : null;
    const change = t
      ? [el('span', { class: 'vrrp-change' }, str(t.from, '?'), ' → ', str(t.to, '?')), ' · ', vrrpReason(t.reason), ' · ', relTime(t.at_ms)]
      : 'none yet';
    const checksum = own(VRRP_CHECKSUM, v.checksum);
    const fact = (label, ...value) => [el('dt', { text: label }), el('dd', null, ...value)];
    const facts = el('dl', { class: 'vrrp-facts' },
      fact('Last change', change),
      fact('Mode', str(v.mode, '–')),
      fact('Checksum', checksum ? el('span', { title: checksum[1], text: checksum[0] }) : str(v.checksum, '–')),
      fact('Scheduling', str(v.scheduling, '–')));

    const track = tracking.length
      ? el('div', { class: 'vrrp-track' },
        el('h4', { text: 'Tracking' }),
        el('ul', { class: 'rows' }, tracking.map(([name, item]) => trackRow(name, item))))
      : null;
    return el('article', { class: 'panel frontend', data: { testid: 'vrrp', vrrp: st } },
      head, stats, el('div', { class: 'vrrp-body' }, facts, track));
  }

  // One tracked item: healthy, failing (priority lowered by its weight) or,
  // with weight 0, failing into Fault.
  function trackRow(name, item) {
    const healthy = item.healthy === true;
    const fatal = isNum(item.weight) && item.weight === 0;
    const kind = healthy ? 'ok' : fatal ? 'fault' : 'failing';
    const weight = !isNum(item.weight) ? null
      : fatal ? (healthy ? 'fault if failing' : 'puts the instance in fault')
        : (healthy ? 'weight ' : 'priority −') + item.weight;
    return el('li', { class: 'row', data: { testid: 'vrrp-track', item: name, track: kind } },
      el('div', { class: 'row-main' },
        el('span', { class: 'row-name', text: name }),
        badge('track', kind, healthy ? 'healthy' : 'failing')),
      el('p', { class: 'row-detail' },
        weight ? el('span', { class: healthy ? null : 'vrrp-lost', text: weight }) : null,
        item.detail ? el('span', { text: str(item.detail) }) : null));
  }

  // -------------------------------------------------------------------- db
  //
  // The db role: this node's PostgreSQL (state, position, lag, and on a
  // primary its standbys as pg_stat_replication shows them), then every db
  // node of the cluster as its last heartbeat reports it, the primary
  // highlighted. Same panels and tables as the balancer (and its phone
  // layout).

  // The cluster table's one word per node (db.rs `status_word`); the states
  // a node passes through on its way share one colour.
  const DB_STATUS = { primary: 'primary', standby: 'standby', fenced: 'fenced', down: 'down', unknown: 'unknown' };
  const DB_PASSING = { preparing: 1, waiting: 1, initializing: 1, cloning: 1, rewinding: 1, starting: 1, restarting: 1, running: 1 };
  const dbStatus = (s) => own(DB_STATUS, s) || (own(DB_PASSING, s) ? 'passing' : 'unknown');
  // The local state badge (status.rs `DbState`).
  const DB_STATE = { running: 'running', fenced: 'fenced', failed: 'failed', stopped: 'stopped', restarting: 'restarting' };
  const dbState = (s) => own(DB_STATE, s) || (own(DB_PASSING, s) ? 'passing' : 'unknown');

  // "16/B374D848", as PostgreSQL writes an LSN.
  function fmtLsn(n) {
    if (!isNum(n) || n < 0) return '–';
    const hex = (v) => Math.floor(v).toString(16).toUpperCase();
    return hex(n / 4294967296) + '/' + hex(n % 4294967296);
  }

  function fmtDelay(s) {
    if (!isNum(s)) return '–';
    return s < 10 ? fmtNum(s, 1) + '\u00a0s' : fmtDuration(s);
  }

  function renderDb(d) {
    const db = isObj(d.db) ? d.db : null;
    const links = memberLinks(d);
    if (!changed('db', [db, links])) return;
    $('db').hidden = !db;
    if (!db) {
      $('db-panels').replaceChildren();
      $('db-note').textContent = '';
      return;
    }
    const rows = arr(db.cluster).filter(isObj);
    const primary = typeof db.primary === 'string' ? db.primary : null;
    const master = typeof db.vrrp_master === 'string' ? db.vrrp_master : null;
    $('db-panels').replaceChildren(...[
      isObj(db.local) ? dbLocalPanel(db.local) : null,
      dbClusterPanel(rows, primary, master, links),
    ].filter(Boolean));

    // "4 db nodes · primary pi-2 · 2 standbys · 1 down · VRRP master pi-1"
    const counts = {};
    for (const r of rows) { const k = dbStatus(r.status); counts[k] = (counts[k] || 0) + 1; }
    const plural = (n, one, many) => n + ' ' + (n === 1 ? one : many);
    $('db-note').textContent = [plural(rows.length, 'db node', 'db nodes'),
      primary ? 'primary ' + primary : 'no primary',
      counts.standby ? plural(counts.standby, 'standby', 'standbys') : null,
      counts.fenced ? counts.fenced + ' fenced' : null,
      counts.down ? counts.down + ' down' : null,
      master ? 'VRRP master ' + master : null].filter(Boolean).join(' · ');
  }

  function dbLocalPanel(s) {
    const st = str(s.state, 'unknown');
    const kind = dbState(st);
    const role = s.role === 'primary' || s.role === 'standby' ? s.role : null;
    const standby = role === 'standby';
    const version = /\/postgresql\/(\d+(?:\.\d+)?)\//.exec(str(s.server));
    const head = el('header', { class: 'fe-head' },
      el('div', { class: 'fe-title' },
        el('h3', { class: 'fe-name', text: 'PostgreSQL' }),
        el('span', { class: 'fe-kind', text: 'this node' }),
        version ? el('span', { class: 'chip', title: str(s.server), text: 'version ' + version[1] }) : null,
        isNum(s.pid) ? el('span', { class: 'chip', title: 'postmaster process id', text: 'pid ' + s.pid }) : null),
      el('span', { class: 'badge db-state', data: { dbstate: kind }, title: 'state of the db role' }, st.toUpperCase()));

    // Not running: what it waits for or what went wrong, and since when.
    const detail = st !== 'running'
      ? el('p', { class: 'db-detail', data: { testid: 'db-detail', level: kind === 'failed' ? 'bad' : kind === 'passing' || kind === 'unknown' ? 'info' : 'warn' } },
        el('span', { class: 'db-detail-text', text: str(s.detail) || st }),
        isNum(s.since_ms) ? el('span', { class: 'db-detail-since', title: 'since ' + fmtDateTime(s.since_ms) }, 'for ',
          el('span', { class: 'dur', data: { since: s.since_ms } }, fmtDuration((serverNow() - s.since_ms) / 1000))) : null)
      : null;

    const restarts = isNum(s.restarts) ? s.restarts : null;
    const quorum = s.quorum === true;
    const stats = el('dl', { class: 'fe-stats' }, [
      ['Role', role || '–', null, 'as PostgreSQL says (pg_is_in_recovery)',
        role === 'primary' && st === 'running' ? 'takes writes' : role ? 'read-only' : null],
      ['Timeline', isNum(s.timeline) ? String(s.timeline) : '–', null, 'goes up by one at each promotion'],
      ['WAL position', el('span', { class: 'mono', text: fmtLsn(s.lsn) }), null,
        standby ? 'replayed; received and flushed ' + fmtLsn(s.receive_lsn) : 'written',
        standby && isNum(s.receive_lsn) && s.receive_lsn !== s.lsn ? 'received ' + fmtLsn(s.receive_lsn) : null],
      standby ? ['Replay lag', fmtBytes(s.replay_lag_bytes), null, 'received but not yet replayed; delay: since the last replayed transaction committed on the primary',
        isNum(s.replay_delay_s) ? 'delay ' + fmtDelay(s.replay_delay_s) : null] : null,
      standby || s.upstream ? ['Upstream', s.upstream ? str(s.upstream) : 'none', standby && !s.upstream ? 'warn' : null, 'the node this standby streams from'] : null,
      ['Restarts', restarts === null ? '–' : fmtCount(restarts), restarts > 0 ? 'warn' : null, 'times the server was restarted after it died'],
      ['Quorum', quorum ? 'yes' : 'no', quorum ? null : role === 'primary' ? 'bad' : 'warn',
        'whether this node sees a majority of the cluster’s voters; a primary without it stops taking writes',
        quorum ? 'majority seen' : 'majority lost'],
    ].filter(Boolean).map(([label, value, level, title, sub]) =>
      el('div', { class: 'fe-stat', data: level ? { level } : null, title },
        el('dt', { text: label }),
        el('dd', null, value, sub ? el('span', { class: 'fe-stat-sub', text: sub }) : null))));

    const replicas = arr(s.replicas).filter(isObj);
    let body = null;
    if (replicas.length) {
      body = el('div', { class: 'lb-scroll' }, el('table', { class: 'lb-table' },
        tableHead([['Standby', 'be-name'], ['State', 'be-state']], DB_REPLICA_COLUMNS),
        el('tbody', null, replicas.map(dbReplicaRow))));
    } else if (role === 'primary') {
      body = el('p', { class: 'placeholder', text: 'No standby is connected.' });
    }
    return el('article', { class: 'panel frontend', data: { testid: 'db-local', dbstate: kind } }, head, detail, stats, body);
  }

  const DB_REPLICA_COLUMNS = [
    { head: 'Sync', title: 'async, sync, quorum or potential (pg_stat_replication.sync_state)', cls: 'sync', cell: (r) => el('span', { class: 'chip', text: str(r.sync_state, '–') }) },
    { head: 'Replayed', label: 'Replayed LSN', cls: 'lsn', cell: (r) => el('span', { class: 'mono', text: fmtLsn(r.replay_lsn) }) },
    { head: 'Lag', title: 'bytes between this node’s WAL position and the standby’s replay', cls: 'num', cell: (r) => dbLagCell(r.lag_bytes, false) },
  ];

  function dbReplicaRow(r) {
    const name = str(r.name, '?');
    const state = str(r.state, 'unknown');
    const addr = str(r.client_addr);
    const nameCell = el('th', { scope: 'row', class: 'be-name' },
      el('span', { class: 'be-line' }, el('span', { class: 'be-title', text: name })),
      addr && addr !== name ? el('span', { class: 'be-addr mono', text: addr }) : null);
    const cells = DB_REPLICA_COLUMNS.map((c, i) => el('td', { class: colClass(DB_REPLICA_COLUMNS, i), 'data-label': c.label || c.head }, c.cell(r)));
    const streaming = state === 'streaming';
    return el('tr', { class: 'backend', data: { testid: 'db-replica', name, state, lb: streaming ? 'up' : 'drain' } },
      nameCell, el('td', { class: 'be-state' }, badge('replica', streaming ? 'streaming' : 'other', state)), cells);
  }

  function dbLagCell(lag, isPrimary) {
    if (isPrimary) return el('span', { class: 'n', data: { level: 'zero' }, title: 'the primary', text: '–' });
    if (!isNum(lag)) return el('span', { class: 'n', data: { level: 'none' }, title: 'unknown', text: '–' });
    return el('span', { class: 'n', data: lag === 0 ? { level: 'zero' } : null, title: fmtNum(lag, 0) + ' bytes' }, fmtBytes(lag));
  }

  function dbClusterPanel(rows, primary, master, links) {
    const down = rows.filter((r) => dbStatus(r.status) === 'down').length;
    const health = !primary ? 'bad' : down > 0 ? 'warn' : 'ok';
    const head = el('header', { class: 'fe-head' },
      el('div', { class: 'fe-title' }, el('h3', { class: 'fe-name', text: 'Cluster' }),
        el('span', { class: 'fe-kind', text: 'from heartbeats' })),
      el('span', { class: 'fe-health', data: { level: health } }, primary ? 'primary ' + primary : 'no primary'));
    const body = rows.length
      ? el('div', { class: 'lb-scroll' }, el('table', { class: 'lb-table' },
        tableHead([['Node', 'be-name'], ['Role', 'be-state']], DB_NODE_COLUMNS),
        el('tbody', null, rows.map((r) => dbNodeRow(r, primary, master, links)))))
      : el('p', { class: 'placeholder', text: 'No db node has reported yet.' });
    return el('article', { class: 'panel frontend', data: { testid: 'db-cluster' } }, head, body);
  }

  const DB_NODE_COLUMNS = [
    { head: 'Timeline', label: 'TL', cls: 'num', cell: (r) => el('span', { class: 'n', text: isNum(r.timeline) ? String(r.timeline) : '–' }) },
    { head: 'WAL position', label: 'LSN', title: 'written (primary) or replayed (standby) WAL position', cls: 'lsn', cell: (r) => el('span', { class: 'mono', title: isNum(r.receive_lsn_bytes) ? 'received ' + str(r.receive_lsn) : null, text: str(r.lsn, '–') }) },
    { head: 'Lag', title: 'bytes behind the primary’s WAL position', cls: 'num', cell: (r, isPrimary) => dbLagCell(r.lag_bytes, isPrimary) },
    { head: 'Upstream', title: 'the node a standby streams from', cls: 'upstream', cell: (r) => el('span', { class: r.upstream ? null : 'muted', text: str(r.upstream, '–') }) },
  ];

  function dbNodeRow(r, primary, master, links) {
    const name = str(r.hostname, '?');
    const kind = dbStatus(r.status);
    const isPrimary = primary !== null && name === primary;
    const alive = r.alive === true;
    const href = r.is_self === true ? null : links[name];
    const nameCell = el('th', { scope: 'row', class: 'be-name' },
      el('span', { class: 'be-line' },
        href ? el('a', { class: 'be-title', href, title: 'Open ' + name + '’s status page', text: name }) : el('span', { class: 'be-title', text: name }),
        r.is_self === true ? el('span', { class: 'self-tag', text: 'this node' }) : null),
      master !== null && name === master ? el('span', { class: 'be-addr db-master', title: 'the node that makes the cluster’s db decisions', text: 'VRRP master' }) : null);
    // Down: why (unreachable, or what its PostgreSQL is doing).
    const why = !alive ? 'unreachable' : kind === 'down' && r.state ? str(r.state) : null;
    const stateCell = el('td', { class: 'be-state' }, badge('db', kind, str(r.status, 'unknown')),
      why ? el('span', { class: 'be-since', text: why }) : null);
    const cells = DB_NODE_COLUMNS.map((c, i) => el('td', { class: colClass(DB_NODE_COLUMNS, i), 'data-label': c.label || c.head }, c.cell(r, isPrimary)));
    const lb = kind === 'down' ? 'down' : kind === 'fenced' ? 'drain' : 'up';
    return el('tr', { class: 'backend', data: { testid: 'db-node', name, status: str(r.status, 'unknown'), db: kind, alive: String(alive), lb, ...(isPrimary ? { primary: 'true' } : {}) } },
      nameCell, stateCell, cells);
  }

  // ---------------------------------------------------------------- storage

  // The volume's state word and the colour it gets.
  const VOLUME_LEVEL = { UP: 'ok', DEGRADED: 'warn', UNKNOWN: 'idle', DOWN: 'bad' };
  // The heal backlog over the last polls, to show it draining.
  const healTrend = [];

  function renderStorage(d) {
    const s = isObj(d.storage) ? d.storage : null;
    const names = addressNames(d);
    if (!changed('storage', [s, names])) return;
    $('storage').hidden = !s;
    if (!s) {
      $('storage-panels').replaceChildren();
      $('storage-note').textContent = '';
      return;
    }
    const view = isObj(s.view) ? s.view : null;
    const volumes = view ? arr(view.volumes).filter(isObj) : [];
    const vol = volumes.find((v) => v.name === s.volume) || null;
    noteHeal(vol);
    $('storage-panels').replaceChildren(...[
      storageVolumePanel(s, vol, view),
      vol ? storageBricksPanel(vol, names) : null,
      view ? storagePeersPanel(view, names) : null,
    ].filter(Boolean));
    const age = isNum(s.data_age_ms) ? s.data_age_ms : null;
    $('storage-note').textContent = [
      'volume ' + str(s.volume, '?') + (vol ? ' ' + str(vol.state, '?') : ''),
      vol ? arr(vol.bricks).length + ' bricks' : null,
      s.mounted === true ? 'mounted on ' + str(s.mount) : s.mounted === false ? 'not mounted' : null,
      age !== null && age >= 10000 ? 'data ' + fmtDuration(age / 1000) + ' old' : null,
    ].filter(Boolean).join(' · ');
  }

  // Brick hosts are addresses; the members list names them.
  function addressNames(d) {
    const out = {};
    for (const m of arr(d.members).filter(isObj)) if (m.address && m.hostname) out[str(m.address)] = str(m.hostname);
    return out;
  }

  function noteHeal(vol) {
    const n = vol && isNum(vol.heal_pending) ? vol.heal_pending : null;
    if (n === null) return;
    healTrend.push({ at: Date.now(), n });
    while (healTrend.length > 30) healTrend.shift();
  }

  // "3,002 entries · draining 120/s" from the last polls' counts.
  function healWords(n) {
    if (!isNum(n)) return ['–', null];
    if (n === 0) return ['none', null];
    const first = healTrend[0];
    const last = healTrend[healTrend.length - 1];
    if (!first || !last || last.at - first.at < 1000) return [fmtCount(n), null];
    const rate = (first.n - last.n) / ((last.at - first.at) / 1000);
    const trend = rate > 0 ? 'draining ' + fmtNum(rate, rate >= 10 ? 0 : 1) + '/s' : rate < 0 ? 'growing' : 'steady';
    return [fmtCount(n), trend];
  }

  function storageVolumePanel(s, vol, view) {
    const state = vol ? str(vol.state, 'UNKNOWN') : null;
    const glusterd = view && isObj(view.glusterd) ? str(view.glusterd.state, 'running') : null;
    const head = el('header', { class: 'fe-head' },
      el('div', { class: 'fe-title' },
        el('h3', { class: 'fe-name', text: 'Volume ' + str(s.volume, '?') }),
        vol && vol.kind ? el('span', { class: 'fe-kind', text: str(vol.kind) }) : null,
        vol && isNum(vol.replica_count) && vol.replica_count > 1
          ? el('span', { class: 'chip', text: 'replica ' + vol.replica_count + (vol.arbiter_count > 0 ? ' arbiter ' + vol.arbiter_count : '') }) : null),
      el('span', { class: 'badge db-state', data: { volume: state ? volumeLevel(state) : 'idle', testid: 'volume-state' }, title: 'the volume as this node’s glusterd reports it' },
        state || 'NOT FORMED'));
    const lines = [];
    if (s.layout_error) lines.push(['bad', 'Cannot form the volume: ' + str(s.layout_error)]);
    if (glusterd && glusterd !== 'running') lines.push(['bad', 'glusterd ' + glusterd.replace('_', ' ') + ': ' + str(view.glusterd.why)]);
    if (vol && vol.state !== 'UP') {
      const last = vol.last_known ? ' (last known ' + str(vol.last_known) + ')' : '';
      lines.push([volumeLevel(vol.state) === 'bad' ? 'bad' : 'warn', str(vol.why) + last]);
    }
    for (const f of arr(s.forming)) lines.push(['info', str(f)]);
    for (const w of vol ? arr(vol.warnings) : []) lines.push(['warn', str(w)]);
    const age = isNum(s.data_age_ms) ? s.data_age_ms : null;
    if (age !== null && age >= 10000) lines.push(['warn', 'gluster has not answered for ' + fmtDuration(age / 1000) + ': showing the last good data']);
    const detail = lines.map(([level, text]) => el('p', { class: 'db-detail', data: { testid: 'storage-detail', level } }, el('span', { class: 'db-detail-text', text })));
    const [heal, trend] = healWords(vol ? vol.heal_pending : null);
    const stats = el('dl', { class: 'fe-stats' }, [
      ['To heal', heal, vol && vol.heal_pending > 0 ? 'warn' : null, 'entries written while a brick was away, waiting to be copied to it', trend],
      ['Split brain', vol && isNum(vol.split_brain) ? fmtCount(vol.split_brain) : '–', vol && vol.split_brain > 0 ? 'bad' : null, 'entries the copies disagree on; gluster cannot heal them alone'],
      ['Mounted', s.mounted === true ? 'yes' : s.mounted === false ? 'no' : '–', s.mounted === false ? 'warn' : null, 'where the web role serves from; remounted: mounts found without their gluster client and mounted again; cut: stalled connections to a down node\'s bricks and glusterd cut so the volume and gluster\'s questions went on without waiting for gluster\'s ping timeout', str(s.mount) + (s.remounts > 0 ? ' · remounted ' + fmtCount(s.remounts) + '×' : '') + (s.fenced > 0 ? ' · cut ' + fmtCount(s.fenced) + ' stalled gluster connections' : '')],
      ['Data age', age === null ? '–' : fmtDuration(age / 1000), age !== null && age >= 10000 ? 'warn' : null, 'since gluster last answered'],
      ['Poll', isNum(s.poll_took_ms) ? fmtNum(s.poll_took_ms / 1000, 2) + '\u00a0s' : '–', null, 'wall time of the last poll of gluster; one node asks gluster the questions that take its cluster lock, the others use its answers', s.answers_from ? 'answers from ' + str(s.answers_from) : null],
    ].map(([label, value, level, title, sub]) =>
      el('div', { class: 'fe-stat', data: level ? { level } : null, title },
        el('dt', { text: label }),
        el('dd', null, value, sub ? el('span', { class: 'fe-stat-sub', text: sub }) : null))));
    return el('article', { class: 'panel frontend', data: { testid: 'storage-volume', state: state || 'none' } }, head, detail, stats);
  }

  function volumeLevel(state) {
    return own(VOLUME_LEVEL, state) || 'idle';
  }

  const BRICK_COLUMNS = [
    { head: 'Space', title: 'free space of the brick’s file system', cls: 'space', cell: brickSpace },
    { head: 'Inodes', title: 'free inodes', cls: 'num', cell: (b) => el('span', { class: 'n', text: isNum(b.inodes_free) && b.inodes_total > 0 ? fmtPercent(100 * b.inodes_free / b.inodes_total) + ' free' : '–' }) },
    { head: 'To heal', title: 'entries this brick holds for others', cls: 'num', cell: (b) => el('span', { class: 'n', data: b.heal_pending > 0 ? { level: 'warn' } : null, text: isNum(b.heal_pending) ? fmtCount(b.heal_pending) : '–' }) },
    { head: 'Process', title: 'brick process id and port', cls: 'mono', cell: (b) => el('span', { class: 'muted', text: isNum(b.pid) ? 'pid ' + b.pid + (isNum(b.port) ? ' · :' + b.port : '') : '–' }) },
  ];

  function brickSpace(b) {
    if (!isNum(b.size_total) || !isNum(b.size_free) || b.size_total <= 0) return el('span', { class: 'muted', text: '–' });
    const usedPct = 100 * (b.size_total - b.size_free) / b.size_total;
    return el('span', { class: 'brick-space', title: fmtBytes(b.size_free) + ' free of ' + fmtBytes(b.size_total) },
      bar(usedPct, b.low_space ? 'hot' : null), el('span', { class: 'n', text: fmtBytes(b.size_free) + ' free' }));
  }

  function storageBricksPanel(v, names) {
    const bricks = arr(v.bricks).filter(isObj);
    const online = bricks.filter((b) => b.state === 'online').length;
    const head = el('header', { class: 'fe-head' },
      el('div', { class: 'fe-title' }, el('h3', { class: 'fe-name', text: 'Bricks' })),
      el('span', { class: 'fe-health', data: { level: online === bricks.length ? 'ok' : online === 0 ? 'bad' : 'warn' } }, online + ' of ' + bricks.length + ' online'));
    const size = isNum(v.replica_count) && v.replica_count > 0 ? v.replica_count : 1;
    const rows = bricks.map((b, i) => {
      const node = names[str(b.host)] || str(b.host);
      const set = size > 1 ? 'set ' + (Math.floor(i / size) + 1) : null;
      const nameCell = el('th', { scope: 'row', class: 'be-name' },
        el('span', { class: 'be-line' }, el('span', { class: 'be-title', text: node }),
          b.arbiter ? el('span', { class: 'chip', text: 'arbiter' }) : null),
        el('span', { class: 'be-addr mono', text: str(b.host) + ':' + str(b.path) + (set ? ' · ' + set : '') }));
      const st = str(b.state, 'unknown');
      const stateCell = el('td', { class: 'be-state' }, badge('brick', st, st),
        b.why && st !== 'online' ? el('span', { class: 'be-since', text: str(b.why) }) : null);
      const cells = BRICK_COLUMNS.map((c, j) => el('td', { class: colClass(BRICK_COLUMNS, j), 'data-label': c.head }, c.cell(b)));
      return el('tr', { class: 'backend', data: { testid: 'brick', name: str(b.host) + ':' + str(b.path), state: st, lb: st === 'online' ? 'up' : st === 'offline' ? 'down' : 'drain' } }, nameCell, stateCell, cells);
    });
    const body = el('div', { class: 'lb-scroll' }, el('table', { class: 'lb-table' },
      tableHead([['Node', 'be-name'], ['State', 'be-state']], BRICK_COLUMNS), el('tbody', null, rows)));
    return el('article', { class: 'panel frontend', data: { testid: 'storage-bricks' } }, head, body);
  }

  function storagePeersPanel(view, names) {
    const peers = arr(view.peers).filter((p) => isObj(p) && p.is_self !== true);
    if (!peers.length) return null;
    const up = peers.filter((p) => p.connected === true).length;
    const head = el('header', { class: 'fe-head' },
      el('div', { class: 'fe-title' }, el('h3', { class: 'fe-name', text: 'Gluster peers' })),
      el('span', { class: 'fe-health', data: { level: up === peers.length ? 'ok' : 'warn' } }, up + ' of ' + peers.length + ' connected'));
    const list = el('ul', { class: 'peer-list' }, peers.map((p) => {
      const host = str(p.hostname, '?');
      const st = p.connected === true ? 'online' : 'offline';
      return el('li', { data: { testid: 'gluster-peer', state: st } }, badge('brick', st, p.connected === true ? 'connected' : 'disconnected'), ' ',
        el('span', { text: names[host] ? names[host] + ' (' + host + ')' : host }));
    }));
    return el('article', { class: 'panel frontend', data: { testid: 'storage-peers' } }, head, list);
  }

  // ---------------------------------------------------------------- system

  function renderStats(d) {
    const s = d.system || {};
    const load = arr(s.load);
    const memPct = isNum(s.memory_used_bytes) && isNum(s.memory_total_bytes) && s.memory_total_bytes > 0
      ? (100 * s.memory_used_bytes) / s.memory_total_bytes : null;
    const stat = (label, value, sub, extra, level) => el('div', { class: 'stat', data: level ? { level } : null },
      el('div', { class: 'stat-label', text: label }),
      el('div', { class: 'stat-value' }, value),
      sub ? el('div', { class: 'stat-sub' }, sub) : null,
      extra || null);
    $('stats').replaceChildren(
      stat('CPU', fmtPercent(s.cpu_percent), null, bar(s.cpu_percent)),
      stat('Load', load.length ? fmtNum(load[0], 2) : '–', load.length >= 3
        ? [el('span', { text: '5 min ' + fmtNum(load[1], 2) }), el('span', { text: '15 min ' + fmtNum(load[2], 2) })] : null),
      stat('Memory', fmtPercent(memPct), fmtBytes(s.memory_used_bytes) + ' of ' + fmtBytes(s.memory_total_bytes), bar(memPct)),
      stat('Temperature', isNum(s.temperature_c) ? fmtTemp(s.temperature_c) : 'no sensor', null, null, tempLevel(s.temperature_c)),
      stat('Uptime', fmtDuration(s.uptime_s), isNum(s.uptime_s) ? 'since ' + fmtDateTime(serverNow() - s.uptime_s * 1000) : null),
      stat('Network', el('span', { class: 'net' },
        el('span', { class: 'rx', title: 'received' }, el('span', { class: 'arrow', text: '↓' }), fmtRate(s.net_rx_bytes_per_s)),
        el('span', { class: 'tx', title: 'sent' }, el('span', { class: 'arrow', text: '↑' }), fmtRate(s.net_tx_bytes_per_s)))));
  }

  function renderDisks(d) {
    const disks = arr((d.system || {}).disks);
    if (!changed('disks', disks)) return;
    $('disks').replaceChildren(...(disks.length ? disks.map((k) => {
      const pct = isNum(k.used_bytes) && isNum(k.total_bytes) && k.total_bytes > 0 ? (100 * k.used_bytes) / k.total_bytes : null;
      return el('li', { class: 'disk', data: { level: fillLevel(pct) } },
        el('span', { class: 'disk-mount mono', text: str(k.mount, '?') }),
        el('span', { class: 'disk-size', text: fmtBytes(k.used_bytes) + ' of ' + fmtBytes(k.total_bytes) }),
        el('span', { class: 'disk-pct', text: fmtPercent(pct) }),
        bar(pct));
    }) : [el('li', { class: 'placeholder', text: 'No disks reported.' })]));
  }

  // ---------------------------------------------------------------- charts

  // Turn the history table into one array per series (null = missing).
  function historyColumns(d) {
    const h = d.history || {};
    const names = arr(h.series);
    const points = arr(h.points).filter((p) => p && isNum(p.at_ms)).sort((a, b) => a.at_ms - b.at_ms);
    const col = (name) => {
      const i = names.indexOf(name);
      return points.map((p) => (i >= 0 && isNum(arr(p.values)[i]) ? p.values[i] : null));
    };
    return {
      times: points.map((p) => p.at_ms),
      cpu: col('cpu_percent'),
      memory: col('memory_percent'),
      temperature: col('temperature_c'),
      rx: col('net_rx_bytes_per_s'),
      tx: col('net_tx_bytes_per_s'),
    };
  }

  function renderCharts(d) {
    const c = historyColumns(d);
    const key = [c.times.length, c.times[0], c.times[c.times.length - 1], chartWidthKey()];
    if (!changed('charts', key)) return;
    chart('cpu', c.times, [{ name: 'CPU', values: c.cpu, cls: 's1' }], { min: 0, max: 100, fmt: fmtPercent });
    chart('memory', c.times, [{ name: 'Memory', values: c.memory, cls: 's2' }], { min: 0, max: 100, fmt: fmtPercent });
    chart('temperature', c.times, [{ name: 'Temperature', values: c.temperature, cls: 's3' }], { fmt: fmtTemp, axisFmt: (v) => fmtNum(v, 0) + '\u00a0°C', pad: 2, step: 5 });
    chart('network', c.times, [
      { name: 'rx', label: '↓', values: c.rx, cls: 's4' },
      { name: 'tx', label: '↑', values: c.tx, cls: 's5' },
    ], { min: 0, fmt: fmtRate, nice: niceBytesCeil });
  }

  // Charts are drawn at their real pixel width so that text stays readable
  // on a phone; redraw when that width changes.
  function chartWidthKey() {
    const any = document.querySelector('svg[data-chart]');
    return any ? Math.round(any.getBoundingClientRect().width / 20) : 0;
  }

  // Nice maximum for byte rates in the binary units they are shown in
  // (2 MiB/s, not 1.9 MiB/s).
  function niceBytesCeil(v) {
    let unit = 1;
    while (v / unit >= 1024) unit *= 1024;
    return niceCeil(v / unit) * unit;
  }

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  // Sample spacing: the median gap between points, so one late sample does
  // not count as a hole but a stalled sampler does.
  function typicalStep(times) {
    const gaps = [];
    for (let i = 1; i < times.length; i++) gaps.push(times[i] - times[i - 1]);
    gaps.sort((a, b) => a - b);
    return gaps.length ? gaps[Math.floor(gaps.length / 2)] : 5000;
  }

  // Split a series into runs of present, close-together samples.
  function segments(times, values, maxGap) {
    const runs = [];
    let run = [];
    for (let i = 0; i < times.length; i++) {
      const v = values[i];
      const broken = run.length && times[i] - times[run[run.length - 1]] > maxGap;
      if (v === null || broken) {
        if (run.length) runs.push(run);
        run = [];
      }
      if (v !== null) run.push(i);
    }
    if (run.length) runs.push(run);
    return runs;
  }

  // Time ranges inside the history where no series has data: runs of
  // missing samples, or samples further apart than maxGap. The time before
  // the first sample is not a hole: there is simply no history yet.
  function holes(times, series, maxGap) {
    const out = [];
    let prev = null;      // time of the last sample with data
    let missing = false;  // samples without data since then
    for (let i = 0; i < times.length; i++) {
      if (!series.some((s) => s.values[i] !== null)) {
        missing = true;
        continue;
      }
      if (prev !== null && (missing || times[i] - prev > maxGap)) out.push([prev, times[i]]);
      prev = times[i];
      missing = false;
    }
    if (prev !== null && missing) out.push([prev, times[times.length - 1]]);
    return out;
  }

  function chart(name, times, series, opts) {
    const el_ = document.querySelector('svg[data-chart="' + name + '"]');
    if (!el_) return;
    const W = Math.max(260, Math.round(el_.getBoundingClientRect().width || 560));
    const H = W < 420 ? 150 : 170;
    el_.setAttribute('viewBox', '0 0 ' + W + ' ' + H);
    el_.replaceChildren();

    const tEnd = times.length ? times[times.length - 1] : serverNow();
    const t0 = tEnd - HOUR_MS;
    const all = series.flatMap((s) => s.values.filter((v, i) => v !== null && times[i] >= t0));
    let lo = isNum(opts.min) ? opts.min : Math.min(...all) - (opts.pad || 0);
    let hi = isNum(opts.max) ? opts.max : Math.max(...all) + (opts.pad || 0);
    if (!all.length) { lo = isNum(lo) ? lo : 0; hi = isNum(hi) ? hi : 1; }
    if (opts.step) {
      // Whole steps, and an even number of them so the middle line is round too.
      lo = Math.floor(lo / opts.step) * opts.step;
      hi = Math.ceil(hi / opts.step) * opts.step;
      if (Math.round((hi - lo) / opts.step) % 2) hi += opts.step;
    }
    if (opts.nice) hi = opts.nice(hi);
    if (!(hi > lo)) hi = lo + 1;

    // Value labels live in a left gutter sized to the longest one, so they
    // never sit on top of the line.
    const axisFmt = opts.axisFmt || opts.fmt;
    const ticks = [hi, (hi + lo) / 2, lo].map((v) => [v, all.length ? axisFmt(v) : '']);
    const gutter = Math.ceil(Math.max(...ticks.map(([, t]) => t.length)) * 6.2) + 10;
    const pad = { l: gutter, r: 6, t: 16, b: 20 };
    const pw = W - pad.l - pad.r;
    const ph = H - pad.t - pad.b;
    const x = (t) => pad.l + ((t - t0) / HOUR_MS) * pw;
    const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * ph;

    // Grid: three horizontal lines with their values sitting on top.
    for (const [v, label] of ticks) {
      el_.append(svg('line', { class: 'grid', x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }));
      el_.append(svgText({ class: 'axis', x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, label));
    }
    // Time axis: a tick every 15 minutes of wall-clock time.
    const tickMs = 15 * 60 * 1000;
    for (let t = Math.ceil(t0 / tickMs) * tickMs; t <= tEnd; t += tickMs) {
      const tx = x(t);
      el_.append(svg('line', { class: 'tick', x1: tx.toFixed(1), x2: tx.toFixed(1), y1: pad.t, y2: H - pad.b }));
      if (tx > pad.l + 22 && tx < W - 40) {
        el_.append(svgText({ class: 'axis', x: tx.toFixed(1), y: H - 5, 'text-anchor': 'middle' }, fmtClock(t)));
      }
    }
    el_.append(svgText({ class: 'axis axis-now', x: W - pad.r, y: H - 5, 'text-anchor': 'end' }, 'now'));

    // Missing samples: shade the hole so a flat line is not mistaken for data.
    const step = typicalStep(times);
    const maxGap = Math.max(step * 3, 15000);
    for (const [a, b] of holes(times, series, maxGap)) {
      const x1 = x(Math.max(a, t0));
      const x2 = x(b);
      if (x2 - x1 < 1) continue;
      const hole = svg('rect', { class: 'gap', x: x1.toFixed(1), y: pad.t, width: (x2 - x1).toFixed(1), height: ph });
      const tip = svg('title');
      tip.textContent = 'no data ' + fmtClock(a) + '–' + fmtClock(b);
      hole.append(tip);
      el_.append(hole);
      if (x2 - x1 > 46) el_.append(svgText({ class: 'axis gap-label', x: (x1 + x2) / 2, y: pad.t + ph / 2, 'text-anchor': 'middle' }, 'no data'));
    }

    if (!all.length) {
      el_.append(svgText({ class: 'axis gap-label', x: pad.l + pw / 2, y: pad.t + ph / 2 + 4, 'text-anchor': 'middle' }, 'no data in the last hour'));
    }

    // Lines, with a soft area under each run.
    for (const s of series) {
      let line = '';
      let area = '';
      for (const run of segments(times, s.values, maxGap)) {
        const pts = run.filter((i) => times[i] >= t0).map((i) => x(times[i]).toFixed(1) + ',' + y(s.values[i]).toFixed(1));
        if (!pts.length) continue;
        if (pts.length === 1) pts.push(pts[0]); // a lone sample still shows as a dot-ish stroke
        line += 'M' + pts.join('L');
        const first = pts[0].split(',')[0];
        const last = pts[pts.length - 1].split(',')[0];
        area += 'M' + first + ',' + y(lo).toFixed(1) + 'L' + pts.join('L') + 'L' + last + ',' + y(lo).toFixed(1) + 'Z';
      }
      if (!line) continue;
      el_.append(svg('path', { class: 'area ' + s.cls, d: area }));
      el_.append(svg('path', { class: 'line ' + s.cls, d: line, 'vector-effect': 'non-scaling-stroke' }));
      const li = lastIndex(s.values);
      if (li >= 0) el_.append(svg('circle', { class: 'dot ' + s.cls, cx: x(times[li]), cy: y(s.values[li]), r: 3 }));
    }

    addHover(el_, times, series, { x, t0, W, H, pad, fmt: opts.fmt });
    renderSummary(name, times, series, t0, opts.fmt);
  }

  function lastIndex(values) {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return i;
    return -1;
  }

  // "now 12% · min 3% · max 68%" beside the chart title, per series.
  function renderSummary(name, times, series, t0, fmt) {
    const box = $('sum-' + name);
    if (!box) return;
    box.replaceChildren(...series.map((s) => {
      const vals = s.values.filter((v, i) => v !== null && times[i] >= t0);
      const li = lastIndex(s.values);
      const part = (k, v) => el('span', { class: 'sum-part' }, el('span', { class: 'sum-k', text: k }), ' ', el('b', { text: v }));
      return el('span', { class: 'sum ' + s.cls },
        s.label ? el('span', { class: 'sum-series', text: s.label }) : null,
        part('now', li >= 0 ? fmt(s.values[li]) : '–'),
        part('min', vals.length ? fmt(Math.min(...vals)) : '–'),
        part('max', vals.length ? fmt(Math.max(...vals)) : '–'));
    }));
  }

  // Pointer read-out: a vertical rule and the values at the nearest sample.
  function addHover(root, times, series, g) {
    const group = svg('g', { class: 'hover', visibility: 'hidden' });
    const rule = svg('line', { class: 'hover-rule', y1: g.pad.t, y2: g.H - g.pad.b });
    const label = svg('text', { class: 'hover-label', y: g.pad.t - 4 });
    group.append(rule, label);
    root.append(group);

    root.onpointermove = (ev) => {
      const rect = root.getBoundingClientRect();
      if (!rect.width || !times.length) return;
      const vx = ((ev.clientX - rect.left) / rect.width) * g.W;
      const t = g.t0 + ((vx - g.pad.l) / (g.W - g.pad.l - g.pad.r)) * HOUR_MS;
      let best = 0;
      for (let i = 1; i < times.length; i++) if (Math.abs(times[i] - t) < Math.abs(times[best] - t)) best = i;
      const px = g.x(times[best]);
      rule.setAttribute('x1', px);
      rule.setAttribute('x2', px);
      const vals = series.map((s) => (s.label ? s.label + ' ' : '') + (s.values[best] === null ? 'no data' : g.fmt(s.values[best])));
      label.textContent = fmtClock(times[best]) + '  ' + vals.join('  ');
      const right = px > g.W / 2;
      label.setAttribute('x', right ? px - 6 : px + 6);
      label.setAttribute('text-anchor', right ? 'end' : 'start');
      group.setAttribute('visibility', 'visible');
    };
    root.onpointerleave = () => group.setAttribute('visibility', 'hidden');
  }

  // ---------------------------------------------------------------- events

  const SEVERITIES = ['critical', 'error', 'warning', 'notice', 'info', 'debug'];

  function eventKey(e) {
    return [e.at_ms, e.node, e.component, e.message].join('|');
  }

  function renderEvents(d) {
    const events = arr(d.events).slice().sort((a, b) => (b.at_ms || 0) - (a.at_ms || 0));
    if (!changed('events', events)) return;
    const list = $('events-list');
    list.replaceChildren(...(events.length ? events.map(eventRow) : [el('li', { class: 'placeholder', text: 'Nothing has happened yet.' })]));

    const bad = events.filter((e) => e.severity === 'error' || e.severity === 'critical').length;
    $('events-note').textContent = events.length + ' shown' + (bad ? ' · ' + bad + ' errors' : '');
  }

  function eventRow(e) {
    const sev = SEVERITIES.includes(e.severity) ? e.severity : 'other';
    const key = eventKey(e);

    const row = el('li', { class: 'event', data: { testid: 'event', severity: str(e.severity, 'info') } },
      el('div', { class: 'event-when' }, relTime(e.at_ms)),
      el('div', { class: 'event-sev' }, badge('severity', sev, str(e.severity, 'info'))),
      el('div', { class: 'event-src' },
        el('span', { class: 'event-node', text: str(e.node, '?') }),
        el('span', { class: 'event-comp', text: str(e.component, '') })),
      eventMessage(e, key));
    return row;
  }

  // The message itself is the <summary> when there are details, so an event
  // stays one line until someone asks for more.
  function eventMessage(e, key) {
    const text = el('span', { class: 'event-text', text: str(e.message, '') });
    const hasDetails = e.details !== null && e.details !== undefined &&
      !(typeof e.details === 'object' && Object.keys(e.details).length === 0);
    if (!hasDetails) return el('div', { class: 'event-msg' }, text);

    const details = el('details', { class: 'event-msg' },
      el('summary', null, text, ' ', el('span', { class: 'more', text: 'details' })),
      el('pre', { class: 'mono', text: JSON.stringify(e.details, null, 2) }));
    details.open = state.openEvents.has(key);
    details.addEventListener('toggle', () => {
      if (details.open) state.openEvents.add(key);
      else state.openEvents.delete(key);
    });
    return details;
  }

  // ------------------------------------------------------------ freshness

  function setStale(stale, err) {
    state.failing = stale;
    state.lastError = err ? describeError(err) : '';
    const banner = document.querySelector('[data-testid="stale-banner"]');
    banner.hidden = !stale;
    document.body.classList.toggle('is-stale', stale);
    if (stale) {
      const host = state.data && state.data.node && state.data.node.hostname ? state.data.node.hostname : location.host;
      $('stale-text').textContent = 'Lost contact with ' + host + ' — retrying';
    }
    tick();
  }

  function describeError(err) {
    if (err.name === 'AbortError') return 'no answer within ' + FETCH_TIMEOUT_MS / 1000 + ' s';
    if (err.name === 'TypeError') return 'no connection'; // fetch's network failure
    if (err.name === 'SyntaxError') return 'answer was not JSON';
    return String(err.message || err);
  }

  // Once a second: relative times, the "updated" indicator and the uptime.
  function tick() {
    for (const node of document.querySelectorAll('time.rel')) updateRel(node);
    for (const node of document.querySelectorAll('.dur[data-since]')) {
      node.textContent = fmtDuration((serverNow() - Number(node.dataset.since)) / 1000);
    }
    const live = $('live');
    const updated = $('updated');
    if (!state.data) {
      live.dataset.live = state.failing ? 'stale' : 'connecting';
      updated.textContent = state.failing ? 'no contact' : 'connecting…';
      return;
    }
    const age = Date.now() - state.receivedAt;
    live.dataset.live = state.failing ? 'stale' : 'live';
    updated.textContent = age < 1500 ? 'updated just now' : 'updated ' + fmtAgo(age);
    if (state.failing) {
      $('stale-detail').textContent = 'Showing data from ' + fmtAgo(age) + (state.lastError ? ' (' + state.lastError + ')' : '') + '.';
    }
  }

  // ------------------------------------------------------------------ loop

  function render(d) {
    safely('header', () => renderHeader(d));
    safely('members', () => renderMembers(d));
    safely('node', () => renderNode(d));
    safely('vrrp', () => renderVrrp(d));
    safely('balancer', () => renderBalancer(d));
    safely('db', () => renderDb(d));
    safely('storage', () => renderStorage(d));
    safely('postgres', () => renderPostgres(d));
    safely('stats', () => renderStats(d));
    safely('charts', () => renderCharts(d));
    safely('disks', () => renderDisks(d));
    safely('events', () => renderEvents(d));
  }

  async function fetchStatus() {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), FETCH_TIMEOUT_MS);
    try {
      const res = await fetch('api/v1/status', { cache: 'no-store', signal: ctrl.signal, headers: { Accept: 'application/json' } });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const data = await res.json();
      if (!data || typeof data !== 'object' || !data.node) throw new Error('unexpected response');
      return data;
    } finally {
      clearTimeout(timer);
    }
  }

  async function poll() {
    try {
      const data = await fetchStatus();
      state.data = data;
      state.receivedAt = Date.now();
      render(data);
      setStale(false);
    } catch (err) {
      setStale(true, err);
    }
    setTimeout(poll, POLL_MS);
  }

  function start() {
    poll();
    setInterval(tick, 1000);
    // Charts follow their container's width (phone rotation, window resize).
    let resizeTimer = 0;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => state.data && safely('charts', () => renderCharts(state.data)), 150);
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
