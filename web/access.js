// Room access in the browser (docs/protocol.md, "Access"): room links and invite links, the password
// dialog, the confirmation dialog, the admin dialog, the owners' room settings panel (access, password,
// lock, invites, ownership, deleting the room) and the owners' menu on the others' tiles. The server
// decides everything; these only ask and show. Text from the server and from people is set with
// textContent only.

const $ = (id) => document.getElementById(id);

/** The path of `room`'s page: /r/<room>, the name URL-encoded. */
export function roomPath(room) {
  return `/r/${encodeURIComponent(room)}`;
}

/** The link to share for `room` on this server. */
export function roomLink(room, loc = window.location) {
  return loc.origin + roomPath(room);
}

/** The link that lets someone in with invite `token` (shown once, when the invite is made). */
export function inviteLink(room, token, loc = window.location) {
  return `${roomLink(room, loc)}?invite=${token}`;
}

/** The room (and invite token, '' when none) that a /r/<room>?invite=<token> address asks for, or null. */
export function linkFromLocation(loc = window.location) {
  const m = /^\/r\/([^/]+)\/?$/.exec(loc.pathname);
  if (!m) return null;
  let room;
  try {
    room = decodeURIComponent(m[1]);
  } catch {
    return null;
  }
  if (!room.trim()) return null;
  return { room, invite: new URLSearchParams(loc.search).get('invite') || '' };
}

/** Copies `text`; resolves true when it is on the clipboard. */
export async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // refused (no permission, page not focused): try the old way
  }
  // Plain HTTP on a LAN address has no async clipboard: copy from a selected text field (inside the open
  // dialog, if any, since everything outside a modal dialog is inert).
  const host = document.querySelector('dialog[open]') || document.body;
  const ta = document.createElement('textarea');
  ta.className = 'copy-buffer';
  ta.value = text;
  ta.setAttribute('readonly', '');
  host.appendChild(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

/** Wires the [data-close] buttons of `dialog` and returns it. */
function closable(dialog, onClose) {
  for (const b of dialog.querySelectorAll('[data-close]')) b.addEventListener('click', () => onClose());
  return dialog;
}

function showError(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

// ---------------------------------------------------------------------------------------------------------
// Password

/**
 * Asks for a room's password. `ask()` resolves with what was typed (or null when cancelled); the dialog then
 * stays open and busy while the join is tried, until `close()` (in) or the next `ask()` (refused again,
 * with the server's message).
 */
export class PasswordDialog {
  constructor() {
    this.dialog = $('password-dialog');
    this.form = $('password-form');
    this.input = $('password-input');
    this.error = $('password-error');
    this.submit = $('password-submit');
    this.roomEl = $('password-room');
    this.resolve = null;
    closable(this.dialog, () => this.close());
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (this.submit.disabled) return;
      const password = this.input.value;
      if (!password) {
        showError(this.error, 'Please type the password.');
        this.input.focus();
        return;
      }
      this.setBusy(true);
      this.settle(password);
    });
    // Escape: the browser closes the dialog; a close() and an ask() right after it find it open again.
    this.dialog.addEventListener('close', () => {
      if (!this.dialog.open) this.settle(null);
    });
  }

  get isOpen() {
    return this.dialog.open;
  }

  ask(room, { error = '' } = {}) {
    this.settle(null);
    this.roomEl.textContent = room;
    this.setBusy(false);
    showError(this.error, error);
    if (!this.dialog.open) {
      this.input.value = '';
      this.dialog.showModal();
    }
    this.input.focus();
    this.input.select();
    return new Promise((resolve) => {
      this.resolve = resolve;
    });
  }

  close() {
    this.setBusy(false);
    if (this.dialog.open) this.dialog.close();
    this.settle(null);
  }

  setBusy(busy) {
    this.submit.disabled = busy;
    this.input.readOnly = busy;
    this.submit.textContent = busy ? 'Joining…' : 'Join';
  }

  settle(value) {
    const r = this.resolve;
    this.resolve = null;
    if (r) r(value);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Confirmation

/**
 * "Are you sure?" in a dialog. `ask({title, text, ok, check, typed})` resolves with null (cancelled) or
 * {checked}: `check` adds a checkbox with that label; `typed` is text the person must type to confirm.
 */
export class ConfirmDialog {
  constructor() {
    this.dialog = $('confirm-dialog');
    this.form = $('confirm-form');
    this.title = $('confirm-title');
    this.text = $('confirm-text');
    this.checkRow = $('confirm-check-row');
    this.check = $('confirm-check');
    this.checkLabel = $('confirm-check-label');
    this.typeRow = $('confirm-type-row');
    this.typeLabel = $('confirm-type-label');
    this.type = $('confirm-type');
    this.ok = $('confirm-ok');
    this.cancel = this.dialog.querySelector('.sheet-actions [data-close]');
    this.typed = '';
    this.resolve = null;
    closable(this.dialog, () => this.dialog.close());
    this.type.addEventListener('input', () => this.refresh());
    this.form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (this.ok.disabled) return;
      this.settle({ checked: this.check.checked });
      this.dialog.close();
    });
    this.dialog.addEventListener('close', () => {
      if (!this.dialog.open) this.settle(null);
    });
  }

  ask({ title, text, ok = 'OK', check = '', typed = '' }) {
    this.settle(null);
    this.title.textContent = title;
    this.text.textContent = text;
    this.ok.textContent = ok;
    this.checkRow.hidden = !check;
    this.checkLabel.textContent = check;
    this.check.checked = false;
    this.typed = typed;
    this.typeRow.hidden = !typed;
    this.typeLabel.textContent = typed ? `Type ${typed} to confirm` : '';
    this.type.value = '';
    this.refresh();
    if (!this.dialog.open) this.dialog.showModal();
    // Typing the name, or else Cancel: Enter alone never confirms something that cannot be undone.
    (typed ? this.type : this.cancel).focus();
    return new Promise((resolve) => {
      this.resolve = resolve;
    });
  }

  refresh() {
    this.ok.disabled = !!this.typed && this.type.value !== this.typed;
  }

  /** Cancels the question, if one is open. */
  close() {
    if (this.dialog.open) this.dialog.close();
    this.settle(null);
  }

  settle(value) {
    const r = this.resolve;
    this.resolve = null;
    if (r) r(value);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Admin

/** The admin token dialog; `onToken(token)` asks the server and throws (with its message) when refused. */
export class AdminDialog {
  constructor({ onToken }) {
    this.onToken = onToken;
    this.dialog = $('admin-dialog');
    this.form = $('admin-form');
    this.input = $('admin-token');
    this.error = $('admin-error');
    this.submit = $('admin-submit');
    closable(this.dialog, () => this.dialog.close());
    this.form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const token = this.input.value.trim();
      if (!token) {
        showError(this.error, 'Please paste the admin token.');
        this.input.focus();
        return;
      }
      this.submit.disabled = true;
      showError(this.error, '');
      try {
        await this.onToken(token);
        this.input.value = '';
        this.dialog.close();
      } catch (err) {
        showError(this.error, err.message || String(err));
        this.input.focus();
        this.input.select();
      } finally {
        this.submit.disabled = false;
      }
    });
  }

  show() {
    showError(this.error, '');
    if (!this.dialog.open) this.dialog.showModal();
    this.input.focus();
  }
}

// ---------------------------------------------------------------------------------------------------------
// The owners' room panel

/** A time of day, with the date when it is not today. */
function when(ms, now = Date.now()) {
  const d = new Date(ms);
  const today = d.toDateString() === new Date(now).toDateString();
  const opts = today ? { hour: '2-digit', minute: '2-digit' } : { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' };
  return d.toLocaleString(undefined, opts);
}

/** One line about an invite (no token: it is shown once, when made). */
export function describeInvite(inv, now = Date.now()) {
  const who = inv.uses == null ? 'Anyone with the link' : inv.uses === 1 ? 'One person' : `${inv.uses} people`;
  const studio = { producer: 'as producers', artist: 'as artists', listener: 'as listeners' };
  const role = inv.role === 'viewer' ? 'as viewers' : studio[inv.studio_role] || 'as members';
  const used = inv.uses == null ? `${inv.used || 0} joined` : `${inv.used || 0} of ${inv.uses} used`;
  const parts = [`${who} ${role}`, used];
  if (Number.isFinite(inv.not_before_ms) && inv.not_before_ms > now) parts.push(`from ${when(inv.not_before_ms, now)}`);
  if (Number.isFinite(inv.expires_at_ms)) parts.push(inv.expires_at_ms <= now ? 'expired' : `until ${when(inv.expires_at_ms, now)}`);
  return parts.join(' · ');
}

/**
 * The room settings dialog for owners (and the admin).
 * @param {{signal, confirm: ConfirmDialog, room: () => string|null, settings: () => object|null,
 *   me: () => number|null, onSettings: (s: object) => void, onDeleting: (room: string) => void,
 *   toast: (msg: string, opts?: object) => void}} opts
 */
export class RoomAdmin {
  constructor(opts) {
    Object.assign(this, opts);
    this.dialog = $('room-admin');
    this.access = $('ra-access');
    this.password = $('ra-password');
    this.passwordLabel = $('ra-password-label');
    this.passwordRow = $('ra-password-row');
    this.locked = $('ra-locked');
    this.settingsError = $('ra-settings-error');
    this.settingsOk = $('ra-settings-ok');
    this.save = $('ra-save');
    this.uses = $('ra-uses');
    this.countRow = $('ra-count-row');
    this.count = $('ra-count');
    this.expiry = $('ra-expiry');
    this.role = $('ra-role');
    this.studioRoleRow = $('ra-studio-role-row');
    this.studioRole = $('ra-studio-role');
    this.inviteError = $('ra-invite-error');
    this.createInvite = $('ra-create-invite');
    this.newInvite = $('ra-new');
    this.link = $('ra-link');
    this.list = $('ra-list');
    this.listEmpty = $('ra-list-empty');
    this.ownerError = $('ra-owner-error');
    closable(this.dialog, () => this.close());

    this.access.addEventListener('change', () => this.refreshPassword());
    this.role.addEventListener('change', () => this.refreshStudioRole());
    $('ra-settings').addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.saveSettings();
    });
    this.uses.addEventListener('change', () => {
      this.countRow.hidden = this.uses.value !== 'n';
    });
    $('ra-invite').addEventListener('submit', (ev) => {
      ev.preventDefault();
      this.makeInvite();
    });
    $('ra-copy').addEventListener('click', async () => {
      this.link.select();
      const ok = await copyText(this.link.value);
      this.toast(ok ? 'The invite link is on the clipboard.' : 'Copy the selected link by hand.', { title: ok ? 'Copied' : 'Could not copy', kind: 'info', timeout: 4000 });
    });
    $('ra-delete').addEventListener('click', () => this.deleteRoom());
    $('ra-resign').addEventListener('click', () => this.resign());
  }

  get isOpen() {
    return this.dialog.open;
  }

  show() {
    this.newInvite.hidden = true;
    this.link.value = '';
    this.password.value = '';
    for (const el of [this.settingsError, this.inviteError, this.ownerError]) showError(el, '');
    this.settingsOk.hidden = true;
    this.countRow.hidden = this.uses.value !== 'n';
    this.fill();
    this.list.replaceChildren();
    this.listEmpty.hidden = true;
    if (!this.dialog.open) this.dialog.showModal();
    this.access.focus();
    this.loadInvites();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  /** The controls as the room's settings say (again when someone else changed them). */
  fill() {
    const s = this.settings() || {};
    this.access.value = s.access || 'public';
    this.locked.checked = !!s.locked;
    this.refreshPassword();
    this.refreshStudioRole();
  }

  /** A studio room's invite carries a studio role (a viewer's does not: it is not a participant). */
  refreshStudioRole() {
    const s = this.settings() || {};
    this.studioRoleRow.hidden = !s.studio || this.role.value === 'viewer';
  }

  refreshPassword() {
    const s = this.settings() || {};
    const pw = this.access.value === 'password';
    this.passwordRow.hidden = !pw;
    const keep = pw && s.access === 'password' && s.has_password;
    this.passwordLabel.textContent = keep ? 'New password (empty: keep the current one)' : 'Password';
  }

  async saveSettings() {
    const s = this.settings() || {};
    const msg = { type: 'room_settings' };
    const access = this.access.value;
    if (access !== s.access) msg.access = access;
    if (access === 'password' && this.password.value) msg.password = this.password.value;
    if (access === 'password' && !this.password.value && !s.has_password) {
      showError(this.settingsError, 'Please type a password for the room.');
      this.password.focus();
      return;
    }
    if (this.locked.checked !== !!s.locked) msg.locked = this.locked.checked;
    showError(this.settingsError, '');
    this.settingsOk.hidden = true;
    if (Object.keys(msg).length === 1) {
      this.settingsOk.hidden = false;
      return;
    }
    this.save.disabled = true;
    try {
      const reply = await this.signal.request(msg, { ownErrors: true });
      if (reply.settings) this.onSettings(reply.settings);
      this.password.value = '';
      this.fill();
      this.settingsOk.hidden = false;
    } catch (err) {
      showError(this.settingsError, err.message);
    } finally {
      this.save.disabled = false;
    }
  }

  async makeInvite() {
    const msg = { type: 'create_invite', expires_in_s: Number(this.expiry.value), role: this.role.value };
    if (!this.studioRoleRow.hidden) msg.studio_role = this.studioRole.value;
    if (this.uses.value === '1') msg.uses = 1;
    if (this.uses.value === 'n') {
      const n = Number(this.count.value);
      if (!Number.isInteger(n) || n < 1) {
        showError(this.inviteError, 'How many people: a whole number, 1 or more.');
        this.count.focus();
        return;
      }
      msg.uses = n;
    }
    showError(this.inviteError, '');
    this.createInvite.disabled = true;
    try {
      const reply = await this.signal.request(msg, { ownErrors: true });
      const room = this.room();
      if (!reply.invite || !reply.invite.token || !room) throw new Error('The server sent no invite.');
      this.link.value = inviteLink(room, reply.invite.token);
      this.newInvite.hidden = false;
      this.link.focus();
      this.link.select();
      this.loadInvites();
    } catch (err) {
      showError(this.inviteError, err.message);
    } finally {
      this.createInvite.disabled = false;
    }
  }

  async loadInvites() {
    try {
      const reply = await this.signal.request({ type: 'list_invites' }, { ownErrors: true });
      this.renderInvites(Array.isArray(reply.invites) ? reply.invites : []);
    } catch (err) {
      this.list.replaceChildren();
      this.listEmpty.hidden = false;
      this.listEmpty.textContent = `Could not load the invites: ${err.message}`;
    }
  }

  renderInvites(invites) {
    const now = Date.now();
    this.list.replaceChildren(
      ...invites.map((inv) => {
        const li = document.createElement('li');
        li.className = 'invite-item';
        li.dataset.inviteId = String(inv.id);
        const text = document.createElement('span');
        text.className = 'invite-text';
        text.textContent = describeInvite(inv, now);
        const revoke = document.createElement('button');
        revoke.type = 'button';
        revoke.className = 'btn small danger';
        revoke.dataset.testid = 'invite-revoke';
        revoke.textContent = 'Revoke';
        revoke.setAttribute('aria-label', `Revoke invite: ${text.textContent}`);
        revoke.addEventListener('click', () => this.revoke(inv, text.textContent));
        li.append(text, revoke);
        return li;
      }),
    );
    this.listEmpty.hidden = invites.length > 0;
    this.listEmpty.textContent = 'No open invites.';
  }

  async revoke(inv, description) {
    const answer = await this.confirm.ask({
      title: 'Revoke this invite?',
      text: `${description}. Nobody new gets in with it.`,
      ok: 'Revoke',
      check: 'Also remove the people who came by it',
    });
    if (!answer) return;
    if (!this.dialog.open) this.dialog.showModal();
    try {
      await this.signal.request({ type: 'revoke_invite', invite_id: inv.id, kick: answer.checked }, { ownErrors: true });
      this.toast(answer.checked ? 'The invite was revoked and the people who came by it removed.' : 'The invite was revoked.', { title: 'Invite revoked', kind: 'info', timeout: 4000 });
    } catch (err) {
      this.toast(err.message, { title: 'Could not revoke the invite', code: err.code || '' });
    }
    this.loadInvites();
  }

  async resign() {
    const me = this.me();
    if (me == null) return;
    showError(this.ownerError, '');
    try {
      await this.signal.request({ type: 'set_owner', participant_id: me, owner: false }, { ownErrors: true });
    } catch (err) {
      showError(this.ownerError, err.message);
    }
  }

  async deleteRoom() {
    const room = this.room();
    if (!room) return;
    const answer = await this.confirm.ask({
      title: `Delete ${room}?`,
      text: 'Everyone in it is sent out, and its chat history is deleted. This cannot be undone.',
      ok: 'Delete room',
      typed: room,
    });
    if (!answer) {
      if (!this.dialog.open && this.room() === room) this.dialog.showModal();
      return;
    }
    this.onDeleting(room);
    try {
      await this.signal.request({ type: 'delete_room', room }, { ownErrors: true });
      this.close();
    } catch (err) {
      this.onDeleting(null);
      if (!this.dialog.open && this.room() === room) this.dialog.showModal();
      showError(this.ownerError, err.message);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// The menu on a tile

/**
 * A small menu (Mute, Make / Remove owner, Remove) opened from a tile's button, with the keyboard:
 * arrows, Home and End move, Escape and Tab close it, focus goes back to the button.
 * @param {{onAction: (action: string, id: string) => void}} opts
 */
export class ParticipantMenu {
  constructor({ onAction }) {
    this.onAction = onAction;
    this.el = $('participant-menu');
    this.items = [...this.el.querySelectorAll('.menu-item')];
    this.anchor = null;
    this.id = null;
    for (const item of this.items) {
      item.addEventListener('click', () => {
        const { id } = this;
        this.close(true);
        if (id != null) this.onAction(item.dataset.action, id);
      });
    }
    this.el.addEventListener('keydown', (ev) => {
      const i = this.items.indexOf(document.activeElement);
      const enabled = this.items.filter((b) => !b.disabled && !b.hidden);
      const at = enabled.indexOf(this.items[i]);
      if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
        ev.preventDefault();
        const step = ev.key === 'ArrowDown' ? 1 : -1;
        enabled[(at + step + enabled.length) % enabled.length].focus();
      } else if (ev.key === 'Home' || ev.key === 'End') {
        ev.preventDefault();
        enabled[ev.key === 'Home' ? 0 : enabled.length - 1].focus();
      } else if (ev.key === 'Escape') {
        ev.preventDefault();
        ev.stopPropagation();
        this.close(true);
      } else if (ev.key === 'Tab') {
        ev.preventDefault(); // the menu sits at the end of the page: back to its tile instead
        this.close(true);
      }
    });
    document.addEventListener('pointerdown', (ev) => {
      if (!this.el.hidden && !this.el.contains(ev.target) && ev.target !== this.anchor && !(this.anchor && this.anchor.contains(ev.target))) this.close(false);
    });
    window.addEventListener('resize', () => this.close(false));
  }

  get openFor() {
    return this.el.hidden ? null : this.id;
  }

  /** Opens the menu under `anchor` for participant `p` ({id, name, owner, mic_muted}). */
  open(anchor, id, p) {
    if (!this.el.hidden && this.id === id) {
      this.close(true);
      return;
    }
    this.close(false);
    this.anchor = anchor;
    this.id = id;
    this.el.setAttribute('aria-label', p.name || 'Participant');
    const mute = this.items.find((b) => b.dataset.action === 'mute');
    mute.disabled = !!p.mic_muted;
    mute.textContent = p.mic_muted ? 'Muted' : 'Mute';
    this.items.find((b) => b.dataset.action === 'owner').textContent = p.owner ? 'Remove owner' : 'Make owner';
    this.el.hidden = false;
    anchor.setAttribute('aria-expanded', 'true');
    const r = anchor.getBoundingClientRect();
    const w = this.el.offsetWidth;
    const h = this.el.offsetHeight;
    const left = Math.max(8, Math.min(r.right - w, window.innerWidth - w - 8));
    const below = r.bottom + 4 + h <= window.innerHeight - 8;
    this.el.style.left = `${left}px`;
    this.el.style.top = `${below ? r.bottom + 4 : Math.max(8, r.top - h - 4)}px`;
    const first = this.items.find((b) => !b.disabled && !b.hidden);
    if (first) first.focus();
  }

  /** Closes it (focus back on the tile's button with `refocus`). */
  close(refocus = false) {
    if (this.el.hidden) return;
    this.el.hidden = true;
    const a = this.anchor;
    this.anchor = null;
    this.id = null;
    if (a) {
      a.setAttribute('aria-expanded', 'false');
      if (refocus && a.isConnected) a.focus();
    }
  }

  /** What changed about `id` (while the menu is open for them): the labels follow. */
  update(id, p) {
    if (this.openFor !== id) return;
    const mute = this.items.find((b) => b.dataset.action === 'mute');
    mute.disabled = !!p.mic_muted;
    mute.textContent = p.mic_muted ? 'Muted' : 'Mute';
    this.items.find((b) => b.dataset.action === 'owner').textContent = p.owner ? 'Remove owner' : 'Make owner';
  }
}
