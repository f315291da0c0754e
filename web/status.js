// /status: the server's rooms, who is in them with their flags, and each connection's media health,
// refreshed every two seconds from /api/status and /api/debug. Names are set with textContent only.

const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text != null) e.textContent = text;
  return e;
}

function kbps(bps) {
  if (!Number.isFinite(bps)) return '–';
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mb/s` : `${Math.round(bps / 1000)} kb/s`;
}

function pct(x) {
  return Number.isFinite(x) ? `${(x * 100).toFixed(1)} %` : '–';
}

function flagBadges(p) {
  const out = [];
  if (p.role === 'viewer') out.push(['viewer', 'Viewer']);
  if (p.mic_muted) out.push(['muted', 'Muted']);
  if (p.deafened) out.push(['deafened', 'Deafened']);
  if (p.camera_off) out.push(['camera-off', 'Camera off']);
  return out.map(([cls, label]) => el('span', `flag ${cls}`, label));
}

function render(status, debug) {
  const rooms = Array.isArray(status.rooms) ? status.rooms : [];
  const peers = new Map();
  for (const d of (debug && debug.participants) || []) peers.set(String(d.participant_id), d);

  const people = rooms.reduce((n, r) => n + (r.participants || []).filter((p) => p.role !== 'viewer').length, 0);
  const viewers = rooms.reduce((n, r) => n + (r.participants || []).filter((p) => p.role === 'viewer').length, 0);
  const summary = $('summary');
  summary.replaceChildren(
    ...[
      [rooms.length, rooms.length === 1 ? 'room' : 'rooms'],
      [people, people === 1 ? 'person' : 'people'],
      [viewers, viewers === 1 ? 'viewer' : 'viewers'],
    ].map(([n, label]) => {
      const box = el('div', 'stat');
      box.append(el('span', 'stat-n', String(n)), el('span', 'stat-label', label));
      return box;
    }),
  );

  const list = $('status-rooms');
  list.replaceChildren();
  $('status-empty').hidden = rooms.length > 0;
  for (const r of rooms) {
    const card = el('section', 'card status-room');
    card.dataset.room = r.name;
    const head = el('div', 'status-room-head');
    const title = el('h2', 'status-room-name', r.name);
    const members = (r.participants || []).filter((p) => p.role !== 'viewer').length;
    const meta = el('span', 'muted', `${members} / ${r.max_participants}`);
    const wallLink = el('a', 'status-link', 'Wall screen');
    wallLink.href = `/viewer/${encodeURIComponent(r.name)}`;
    head.append(title, meta, wallLink);
    card.appendChild(head);

    const ps = r.participants || [];
    if (ps.length === 0) {
      card.appendChild(el('p', 'muted status-none', 'Nobody here.'));
    } else {
      const table = el('table', 'status-table');
      const thead = el('thead');
      const hr = el('tr');
      for (const h of ['Name', 'State', 'ICE', 'In', 'Out', 'Loss in / out', 'RTT']) hr.appendChild(el('th', null, h));
      thead.appendChild(hr);
      const tbody = el('tbody');
      for (const p of ps) {
        const tr = el('tr');
        tr.dataset.participantId = String(p.id);
        const nameCell = el('td');
        const nameBox = el('div', 'status-name');
        nameBox.appendChild(el('span', null, p.name));
        if (r.active_speaker != null && String(r.active_speaker) === String(p.id)) {
          nameBox.appendChild(el('span', 'flag speaking', 'Speaking'));
        }
        nameCell.appendChild(nameBox);
        const stateCell = el('td');
        const flags = el('div', 'status-flags');
        flags.append(...flagBadges(p));
        stateCell.appendChild(flags);
        const d = peers.get(String(p.id)) || {};
        tr.append(
          nameCell,
          stateCell,
          el('td', null, d.ice_state || '–'),
          el('td', null, kbps(d.bitrate_in_bps)),
          el('td', null, kbps(d.bitrate_out_bps)),
          el('td', null, `${pct(d.loss_in)} / ${pct(d.loss_out)}`),
          el('td', null, Number.isFinite(d.rtt_ms) ? `${Math.round(d.rtt_ms)} ms` : '–'),
        );
        tbody.appendChild(tr);
      }
      table.append(thead, tbody);
      const wrap = el('div', 'status-table-wrap');
      // It scrolls sideways on a phone: reachable by keyboard, and named.
      wrap.tabIndex = 0;
      wrap.setAttribute('role', 'region');
      wrap.setAttribute('aria-label', `People in ${r.name}`);
      wrap.appendChild(table);
      card.appendChild(wrap);
    }
    list.appendChild(card);
  }
}

// The admin token, when the page was opened as /status?token=… (the server asks for it unless it runs
// with --public-status).
const TOKEN = new URLSearchParams(location.search).get('token');

async function getJson(path) {
  const headers = TOKEN ? { Authorization: `Bearer ${TOKEN}` } : {};
  const res = await fetch(path, { cache: 'no-store', headers });
  if (res.status === 401) throw new Error('this page needs the admin token: open it as /status?token=<admin token>');
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

async function refresh() {
  const conn = $('conn');
  try {
    const [status, debug] = await Promise.all([getJson('/api/status'), getJson('/api/debug').catch(() => null)]);
    render(status, debug);
    $('status-error').hidden = true;
    conn.dataset.state = 'online';
    conn.querySelector('.conn-label').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    $('status-error').textContent = err.message.startsWith('this page') ? err.message : `Cannot reach the server: ${err.message}`;
    $('status-error').hidden = false;
    conn.dataset.state = 'offline';
    conn.querySelector('.conn-label').textContent = 'Offline';
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
