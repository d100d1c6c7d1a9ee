// The map page: wires the socket, the map, the markers, the member list and the
// share control together, and keeps the room's state as the server last told it.

import { MarkerCard } from "./card.js";
import { clockOffset, serverNow, syncClock } from "./clock.js";
import { formatLeft, t, tf } from "./format.js";
import { HistoryMode } from "./history.js";
import { createMap, fitPoints } from "./map.js";
import { MarkerLayer } from "./markers.js";
import { MemberList } from "./members.js";
import { Places, placeAt, placesBounds } from "./places.js";
import {
  browserId,
  compareRows,
  errorAction,
  goneMembers,
  inheritDevice,
  keepAliveFor,
  mayResume,
  memberRow,
  mergeMember,
  placeholderMember,
  presenceMember,
  shareMode,
  shareOf,
  sourceLabel,
  snapshotMembers,
  stopMember,
} from "./protocol.js";
import { LocationSharer } from "./share.js";
import { RoomSocket } from "./socket.js";
import { WatchLinks } from "./watchlinks.js";

const config = JSON.parse(document.getElementById("geoshare-config").textContent);

function randomBytes(bytes) {
  return window.crypto.getRandomValues(bytes);
}

// This browser, as the server tells a share's sources apart (docs/protocol.md, "One
// source per share"): an id kept in localStorage and sent with the socket.
let storage = null;
try {
  storage = window.localStorage;
} catch {
  storage = null;
}
const BROWSER_ID = browserId(storage, randomBytes);
const MY_SOURCE = `browser:${BROWSER_ID}`;

const state = {
  me: config.memberId,
  room: { tick_ms: 100, stale_after_ms: 120000, trail_ms: 600000 },
  members: new Map(),
  positions: new Map(),
  // True once the server said this member is gone: nothing more is shown.
  cleared: false,
  // After the first snapshot, frames about members are news for the feed.
  snapshotSeen: false,
  following: null,
  fitted: false,
  // The view follows everyone until the user pans or zooms the map themselves.
  userMoved: false,
};

const elements = {
  map: document.getElementById("map"),
  connection: document.getElementById("connection"),
  notice: document.getElementById("notice"),
  toast: document.getElementById("toast"),
  panel: document.getElementById("panel"),
  panelBody: document.getElementById("panel-body"),
  panelToggle: document.getElementById("panel-toggle"),
  memberCount: document.getElementById("member-count"),
  memberList: document.getElementById("member-list"),
  shareToggle: document.getElementById("share-toggle"),
  shareDuration: document.getElementById("share-duration"),
  shareDurationLabel: document.querySelector(".share-duration-label"),
  shareStatus: document.getElementById("share-status"),
  shareSource: document.getElementById("share-source"),
  shareStop: document.getElementById("share-stop"),
  shareFromRow: document.getElementById("share-from-row"),
  shareFrom: document.getElementById("share-from"),
  fitEveryone: document.getElementById("map-fit"),
  centreOnMe: document.getElementById("map-me"),
  retryNow: document.getElementById("retry-now"),
  shareInvite: document.getElementById("share-invite"),
  sheetHandle: document.getElementById("sheet-handle"),
  markerCard: document.getElementById("marker-card"),
  copyInvite: document.getElementById("copy-invite"),
  inviteUrl: document.getElementById("invite-url"),
  followNote: document.getElementById("follow-note"),
  followText: document.getElementById("follow-text"),
  followStop: document.getElementById("follow-stop"),
  leaveForm: document.getElementById("leave-form"),
  topbar: document.querySelector(".topbar"),
};

const map = createMap(elements.map, config);
const markers = new MarkerLayer(map, { onClick: openCard, me: config.memberId });
const card = new MarkerCard(elements.markerCard, { onFollow: toggleFollow, onClose: scheduleRender });
const historyMode = config.history ? new HistoryMode(map, config.history) : null;
const places = new Places(map, {
  config,
  memberName: (id) => state.members.get(id)?.name ?? t("Someone"),
  members: () => state.members,
  onMessage: showToast,
  onPicking: handlePicking,
});
const memberList = new MemberList(elements.memberList, { onSelect: toggleFollow });
const socket = new RoomSocket(`${config.socketPath}?browser=${BROWSER_ID}`, {
  onFrame: handleFrame,
  onState: handleConnectionState,
});
const sharer = config.canShare
  ? new LocationSharer({
      send: sendFrame,
      onChange: handleShareChange,
      onError: showShareError,
      keepAliveMs: keepAliveFor(state.room.stale_after_ms),
    })
  : null;

function sendFrame(frame) {
  return socket.send(frame);
}

// -- frames from the server ------------------------------------------------------

function handleFrame(frame) {
  if (state.cleared) return;
  switch (frame.type) {
    case "snapshot":
      applySnapshot(frame);
      break;
    case "positions":
      for (const position of frame.positions) applyPosition(position);
      break;
    case "presence":
      applyMember(presenceMember(frame), { live: true });
      break;
    case "members":
      for (const member of frame.members) applyMember(member, { live: true });
      break;
    case "stopped":
      applyStopped(frame.member);
      // My share ended: so did its "until my share ends" links; the list says so.
      if (frame.member === state.me && watchLinks) watchLinks.refresh();
      break;
    case "removed":
      applyRemoved(frame.member);
      break;
    case "error":
      applyError(frame);
      break;
    case "pong":
      syncClock(frame.now);
      break;
    case "places":
      places.setPlaces(frame.places);
      frameRoom();
      break;
    case "place_event":
      places.addEvent(frame);
      break;
    default:
      break;
  }
  scheduleRender();
}

function applySnapshot(frame) {
  syncClock(frame.now);
  state.me = frame.you;
  state.room = { ...state.room, ...frame.room };
  markers.setTrailMs(state.room.trail_ms);
  if (sharer) sharer.setKeepAlive(keepAliveFor(state.room.stale_after_ms));
  state.members = snapshotMembers(frame);
  state.snapshotSeen = true;
  for (const id of goneMembers(markers.ids(), frame.positions)) markers.remove(id);
  state.positions = new Map();
  for (const position of frame.positions) applyPosition(position);
  if (state.following !== null && !state.positions.has(state.following)) unfollow();
  if (!state.userMoved && state.positions.size > 0) fitEveryone();
  if (sharer) sharer.resend();
  resumeShare();
  renderShare();
  places.renderChoices();
}

function applyPosition(position) {
  const id = position.member;
  let member = state.members.get(id);
  if (member === undefined) {
    member = placeholderMember(id);
    state.members.set(id, member);
  }
  if (!member.sharing && state.snapshotSeen && id !== state.me) {
    places.addNote(tf("%(name)s started sharing", member));
  }
  member.sharing = true;
  const previous = state.positions.get(id);
  const joined = previous === undefined;
  // A positions frame names the device only when it changed (docs/protocol.md).
  state.positions.set(id, inheritDevice(position, previous));
  markers.update(member, position, position.seen ?? serverNow());
  if (state.following === id) centerOn(markers.targetOf(id));
  // Someone new on the map: show everyone again, unless the user has moved the map.
  if ((joined || !state.fitted) && !state.userMoved && state.following === null) {
    fitEveryone();
  }
  if (id === state.me) renderShare();
}

// `live`: a frame about a change now (not a snapshot): a join or a share starting goes
// to the feed.
function applyMember(member, { live = false } = {}) {
  const known = state.members.get(member.id);
  if (live && state.snapshotSeen && member.id !== state.me) {
    if (known === undefined) places.addNote(tf("%(name)s joined", member));
    else if (member.sharing && !known.sharing) {
      places.addNote(tf("%(name)s started sharing", member));
    }
  }
  const merged = mergeMember(known, member);
  state.members.set(member.id, merged.member);
  if (merged.rename) markers.rename(member);
  // My share moved to another source ("Share from here instead" elsewhere): the next
  // position from here is refused (not_the_source) and this page stops watching. Send
  // it now rather than at the next keep-alive.
  if (member.id === state.me && sharer && sharer.active && member.sharing
      && member.source && member.source !== MY_SOURCE) {
    sharer.sendFix({ refresh: true });
  }
}

function applyStopped(id) {
  state.positions.delete(id);
  markers.remove(id);
  stopMember(state.members.get(id));
  if (state.following === id) unfollow();
  if (id === state.me) {
    // Ended by its end time, or from another tab or device: stop watching here too.
    if (sharer && sharer.active) {
      sharer.stop({ tellServer: false });
      showToast(t("Your share has ended."));
    }
    renderShare();
  }
}

function applyRemoved(id) {
  if (id === state.me) {
    // This member was removed: the server closes the socket with 4403 next.
    clearRoom();
    return;
  }
  const member = state.members.get(id);
  if (member) places.addNote(tf("%(name)s left the room", member));
  applyStopped(id);
  state.members.delete(id);
}

// The server says this member is gone (removed, the room deleted, signed out): what
// the page knew of the room is no longer theirs to see, so nothing of it stays on
// screen, not even greyed out (issue 25 item 19).
function clearRoom() {
  if (state.cleared) return;
  state.cleared = true;
  if (sharer) sharer.stop({ tellServer: false });
  for (const id of markers.ids()) markers.remove(id);
  state.positions = new Map();
  state.members = new Map();
  state.following = null;
  card.hide();
  places.clear();
  if (historyMode) historyMode.clear();
  document.body.classList.add("is-gone");
  scheduleRender();
}

function applyError(frame) {
  switch (errorAction(frame, sharer !== null)) {
    case "drop-device-time":
      sharer.dropDeviceTime();
      sharer.resend();
      break;
    case "notice":
      showToast(frame.detail || t("Not allowed."));
      break;
    case "stop-sharing":
      sharer.stop({ tellServer: false });
      renderShare();
      break;
    case "not-the-source":
      // The share runs from another device or browser: stop watching here, say where.
      if (sharer.active) {
        sharer.stop({ tellServer: false });
        showToast(tf("Your share now runs from %(source)s.", { source: mySourceName() }));
      }
      renderShare();
      break;
    default:
      break;
  }
}

// -- connection --------------------------------------------------------------------

const CONNECTION_TEXT = {
  connecting: "Connecting…",
  connected: "Live",
  reconnecting: "Reconnecting",
  closed: "Disconnected",
};

let wasConnected = false;

function handleConnectionState(connection, detail) {
  elements.connection.dataset.state = connection;
  renderConnection();
  if (connection === "connected") {
    if (wasConnected) showToast(t("Reconnected"));
    wasConnected = true;
  } else if (connection === "closed") {
    // A final close (4401, 4403, 4404): the member may not see this room any more.
    clearRoom();
    showNotice(detail);
  }
}

function renderConnection() {
  const text = CONNECTION_TEXT[socket.state] ? t(CONNECTION_TEXT[socket.state]) : socket.state;
  let countdown = "";
  if (socket.state === "reconnecting") {
    const seconds = Math.ceil((socket.retryAt - Date.now()) / 1000);
    if (seconds > 0) countdown = tf(" in %(seconds)s s", { seconds });
  }
  const element = elements.connection;
  if (element.dataset.text === text + countdown) return;
  element.dataset.text = text + countdown;
  const label = document.createElement("span");
  label.textContent = text;
  const detail = document.createElement("span");
  detail.className = "countdown";
  detail.textContent = countdown;
  element.replaceChildren(label, detail);
  // While not connected, the list and markers may be out of date: say so.
  document.body.classList.toggle("is-offline", socket.state !== "connected");
  elements.retryNow.hidden = socket.state !== "reconnecting";
  if (elements.shareToggle) elements.shareToggle.disabled = socket.state === "closed";
}

function showNotice(text) {
  const notice = elements.notice;
  notice.replaceChildren();
  const message = document.createElement("p");
  message.textContent = text;
  const home = document.createElement("a");
  home.href = "/";
  home.textContent = t("Go to your rooms");
  notice.append(message, home);
  notice.hidden = false;
}

let toastTimer = 0;

function showToast(text) {
  const toast = elements.toast;
  toast.textContent = text;
  toast.dataset.kind = "";
  toast.hidden = false;
  window.clearTimeout(toastTimer);
  toastTimer = window.setTimeout(hideToast, 3500);
}

function hideToast() {
  elements.toast.hidden = true;
  elements.toast.dataset.kind = "";
}

// A share error (permission refused, no fix yet) stays true only until the share works.
function showShareError(text) {
  showToast(text);
  elements.toast.dataset.kind = "share-error";
}

function handleShareChange(shareState) {
  if (shareState === "on" && elements.toast.dataset.kind === "share-error") hideToast();
  renderShare();
}

// -- rendering -----------------------------------------------------------------------

let renderQueued = false;

function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  window.setTimeout(render, 0);
}

function myPosition() {
  const own = sharer ? sharer.myPosition() : null;
  if (own) return own;
  return state.positions.get(state.me) || null;
}

function render() {
  renderQueued = false;
  const now = serverNow();
  const staleAfter = state.room.stale_after_ms;
  const me = myPosition();
  const staleIds = new Set();
  const labels = new Map();
  const rows = [];
  for (const member of state.members.values()) {
    const position = state.positions.get(member.id);
    const row = memberRow(member, position, {
      now, staleAfter, me, you: state.me, following: state.following, mine: MY_SOURCE,
    });
    // "at School": where a fresh position is, by the enter rule (places.js placeAt).
    const place = row.sharing && !row.stale ? placeAt(position, places.places.values()) : null;
    row.place = place ? place.name : "";
    if (row.stale) {
      staleIds.add(row.id);
      labels.set(row.id, row.ago);
    }
    rows.push(row);
  }
  rows.sort(compareRows);
  memberList.render(rows);
  markers.refresh(now, staleIds, labels);
  card.render({
    member: state.members.get(card.memberId),
    position: state.positions.get(card.memberId),
    now,
    you: card.memberId === state.me,
    following: state.following !== null && state.following === card.memberId,
    mine: MY_SOURCE,
  });
  elements.memberCount.textContent = String(rows.length);
  renderConnection();
  renderFollow();
}

// The member's own share as the server last told it: on, and when it ends.
function myShare() {
  return shareOf(state.members.get(state.me), config.share);
}

// Where my share runs from, in words (the member list's and the card's name for it).
function mySourceName() {
  const me = state.members.get(state.me);
  return sourceLabel(me, state.positions.get(state.me), { you: true, mine: MY_SOURCE })
    || t("another device");
}

function renderShare() {
  const button = elements.shareToggle;
  if (!button || !sharer) return;
  const share = myShare();
  const left = share.on ? formatLeft(share.until, serverNow()) : "";
  const mode = shareMode(sharer.state, share, MY_SOURCE);
  let label = t("Share my location");
  if (mode === "locating") {
    label = t("Finding you… Stop");
  } else if (mode === "on") {
    label = left ? tf("Sharing · %(left)s · Stop", { left }) : t("Sharing · Stop");
  } else if (mode === "resume") {
    label = left ? tf("Share on · %(left)s · Resume", { left }) : t("Share on · Resume");
  } else if (mode === "elsewhere") {
    label = t("Share from here instead");
  }
  button.dataset.mode = mode;
  button.setAttribute("aria-pressed", String(mode === "on" || mode === "locating"));
  const text = button.querySelector(".share-label");
  if (text.textContent !== label) text.textContent = label;
  if (elements.shareDurationLabel) elements.shareDurationLabel.hidden = mode !== "off";
  // Stop is there whenever a share runs and the big button does not stop it: from any
  // browser of the member, with or without the location permission.
  const status = mode === "resume" || mode === "elsewhere";
  elements.shareStatus.hidden = !status;
  if (status) {
    let where = t("Your share is on.");
    if (mode === "elsewhere") {
      where = share.source === "device:*" ? t("Waiting for your phone apps…")
        : tf("Sharing from %(source)s", { source: mySourceName() });
    }
    if (left) where = `${where} · ${left}`;
    if (elements.shareSource.textContent !== where) elements.shareSource.textContent = where;
  }
  if (elements.shareFromRow) elements.shareFromRow.hidden = mode !== "off";
  document.body.classList.toggle("is-sharing", mode !== "off");
}

// A reload, or a visit to another page of the room, must not end a running share:
// when the server says it runs from this browser and the browser already has the
// permission, watch the position again by itself; without the permission, the button
// says "Resume". A share from another device or browser is never started here by
// itself (the button offers "Share from here instead").
let resumeTried = false;

async function resumeShare() {
  if (!sharer || sharer.active || resumeTried || !mayResume(myShare(), MY_SOURCE)) return;
  resumeTried = true;
  let granted = false;
  try {
    const status = await navigator.permissions.query({ name: "geolocation" });
    granted = status.state === "granted";
  } catch {
    granted = false;
  }
  if (granted && mayResume(myShare(), MY_SOURCE) && !sharer.active) {
    sharer.start();
    showToast(t("Still sharing your location."));
  } else {
    renderShare();
  }
}

function renderFollow() {
  const member = state.members.get(state.following);
  const following = state.following !== null && member !== undefined;
  elements.followNote.hidden = !following;
  if (following) elements.followText.textContent = tf("Following %(name)s", member);
}

// -- follow and fit --------------------------------------------------------------

function follow(id) {
  const target = markers.targetOf(id);
  if (target === null) return;
  state.following = id;
  centerOn(target, Math.max(map.getZoom(), 15));
  scheduleRender();
}

function unfollow() {
  state.following = null;
  scheduleRender();
}

function toggleFollow(id) {
  if (state.following === id) unfollow();
  else follow(id);
}

// How much of the map the top bar and the panel cover, in pixels per side.
function coveredInsets() {
  const panel = elements.panel.getBoundingClientRect();
  const top = elements.topbar.getBoundingClientRect().bottom;
  const side = panel.width < window.innerWidth * 0.6;
  return {
    top,
    left: 0,
    right: side ? window.innerWidth - panel.left : 0,
    bottom: side ? 0 : window.innerHeight - panel.top,
  };
}

function fitOptions() {
  const inset = coveredInsets();
  // Labels hang below the dots: a little more room at the bottom.
  return {
    paddingTopLeft: [inset.left + 48, inset.top + 32],
    paddingBottomRight: [inset.right + 48, inset.bottom + 56],
  };
}

// Put `latlng` in the middle of the part of the map that is not covered.
function centerOn(latlng, zoom = map.getZoom()) {
  const inset = coveredInsets();
  const offset = L.point((inset.left - inset.right) / 2, (inset.top - inset.bottom) / 2);
  const center = map.unproject(map.project(latlng, zoom).subtract(offset), zoom);
  map.setView(center, zoom, { animate: true });
}

// -- controls ------------------------------------------------------------------------

function setMyShare(until, source) {
  const me = state.members.get(state.me);
  if (me) {
    me.sharing = true;
    me.sharing_until = until;
    me.source = source;
    me.source_name = "";
  }
}

function handleShareClick() {
  const share = myShare();
  const mode = shareMode(sharer.state, share, MY_SOURCE);
  if (sharer.active) {
    sharer.stop();
    renderShare();
  } else if (mode === "resume") {
    // Running from this browser, not watched (the permission was not given after a
    // reload): watch here, the share as it is.
    sharer.start();
  } else if (mode === "elsewhere") {
    // "Share from here instead": the share, as it is, moves to this browser.
    sendFrame({ type: "share", until: share.until, take_over: true });
    setMyShare(share.until, MY_SOURCE);
    sharer.start();
  } else {
    const minutes = elements.shareDuration ? Number(elements.shareDuration.value) : 0;
    const until = minutes > 0 ? Math.round(serverNow() + minutes * 60000) : null;
    if (elements.shareFrom && elements.shareFrom.value === "phones") {
      // From my phone apps: the first to send becomes the source; nothing from here.
      sendFrame({ type: "share", until, from: "phones" });
      setMyShare(until, "device:*");
      renderShare();
      return;
    }
    sendFrame({ type: "share", until });
    setMyShare(until, MY_SOURCE);
    sharer.start();
  }
}

// Nobody shares yet: frame the room's places rather than the whole world, until a
// position comes (which fits everyone) or the user moves the map. A room with no
// places opens on this browser's own area, where it may already read its location
// (never asked for here: only when the permission is granted), else on the world.
let areaTried = false;

function frameRoom() {
  if (state.userMoved || state.fitted || state.positions.size > 0) return;
  const bounds = placesBounds(places.circles.values());
  if (bounds !== null) {
    map.fitBounds(bounds, { ...fitOptions(), maxZoom: 16 });
    return;
  }
  if (!areaTried) {
    areaTried = true;
    frameOwnArea();
  }
}

const OWN_AREA_ZOOM = 13;

async function frameOwnArea() {
  if (!("geolocation" in navigator) || !navigator.permissions) return;
  try {
    const status = await navigator.permissions.query({ name: "geolocation" });
    if (status.state !== "granted") return;
  } catch {
    return;
  }
  navigator.geolocation.getCurrentPosition((found) => {
    // Only if nothing framed the map meanwhile (a position, places, the user).
    if (state.userMoved || state.fitted || state.positions.size > 0
        || placesBounds(places.circles.values()) !== null) return;
    map.setView([found.coords.latitude, found.coords.longitude], OWN_AREA_ZOOM);
  }, () => {}, { maximumAge: 600000, timeout: 10000 });
}

// Stop, from any browser of the member: the share ends for everyone.
function handleShareStop() {
  if (sharer.active) sharer.stop();
  else sendFrame({ type: "stop" });
  renderShare();
}

// Fit the view to every marker (and my own position); false when there is none.
function fitEveryone() {
  const points = markers.targets();
  const me = sharer ? sharer.myPosition() : null;
  if (me) points.push([me.lat, me.lon]);
  const fitted = fitPoints(map, points, fitOptions());
  if (fitted) state.fitted = true;
  return fitted;
}

function handleFitClick() {
  unfollow();
  // Asked for: the view follows everyone again, until the user moves it.
  state.userMoved = false;
  if (!fitEveryone()) showToast(t("Nobody is sharing a position yet."));
}

function handleCentreOnMe() {
  const me = myPosition();
  if (me === null) {
    showToast(config.canShare ? t("Share your location to see yourself on the map.")
                              : t("You are not sharing a position."));
    return;
  }
  unfollow();
  state.userMoved = true;
  centerOn(L.latLng(me.lat, me.lon), Math.max(map.getZoom(), 16));
}

// The user moved the map: stop fitting it to everyone by itself.
function handleUserMove() {
  state.userMoved = true;
  if (state.following !== null) unfollow();
}

function openCard(id) {
  card.show(id);
  scheduleRender();
}

function handleRetryNow() {
  socket.retryNow();
  renderConnection();
}

async function handleShareInvite() {
  try {
    await navigator.share({
      title: tf("Join “%(name)s” on geoshare", { name: config.roomName }),
      text: tf("See where we are, live: join “%(name)s”.", { name: config.roomName }),
      url: elements.inviteUrl.value,
    });
  } catch (error) {
    // AbortError: the person closed the share sheet; nothing to say.
    if (error && error.name !== "AbortError") showToast(t("Could not share: copy the link instead."));
  }
}

function setPanelOpen(open) {
  elements.panel.dataset.open = String(open);
  elements.panelToggle.setAttribute("aria-expanded", String(open));
  elements.panelBody.hidden = !open;
}

// Placing a place on a phone: the sheet steps aside so the map can be tapped, and opens
// again (on the form) once the spot is picked or placing is cancelled.
function handlePicking(active) {
  if (!window.matchMedia("(max-width: 700px)").matches) return;
  setPanelOpen(!active);
}

function handlePanelToggle() {
  setPanelOpen(elements.panel.dataset.open !== "true");
}

// The bottom sheet's handle: drag up to open, down to close; a tap toggles.
let dragStartY = null;

function handleHandleDown(event) {
  dragStartY = event.clientY;
  elements.sheetHandle.setPointerCapture(event.pointerId);
}

function handleHandleUp(event) {
  if (dragStartY === null) return;
  const moved = event.clientY - dragStartY;
  dragStartY = null;
  if (moved < -20) setPanelOpen(true);
  else if (moved > 20) setPanelOpen(false);
  else handlePanelToggle();
}

async function handleCopyInvite() {
  const url = elements.inviteUrl.value;
  let copied = false;
  try {
    await navigator.clipboard.writeText(url);
    copied = true;
  } catch {
    elements.inviteUrl.select();
    copied = document.execCommand("copy");
  }
  showToast(copied ? t("Invite link copied") : t("Select the link and copy it"));
  elements.copyInvite.textContent = copied ? t("Copied") : t("Copy invite link");
  window.setTimeout(resetCopyLabel, 2000);
}

function resetCopyLabel() {
  elements.copyInvite.textContent = t("Copy invite link");
}

function handleLeaveSubmit(event) {
  const question = event.submitter ? event.submitter.dataset.confirm : "";
  if (question && !window.confirm(question)) {
    event.preventDefault();
    return;
  }
  if (sharer) sharer.stop({ tellServer: false });
}


function handleClockTick() {
  render();
  renderShare();
}

// On phones the panel is a bottom sheet: keep Leaflet's bottom controls above it.
function handlePanelResize() {
  const narrow = window.matchMedia("(max-width: 700px)").matches;
  const height = narrow ? elements.panel.getBoundingClientRect().height : 0;
  document.documentElement.style.setProperty("--panel-height", `${Math.round(height)}px`);
  const top = elements.topbar.getBoundingClientRect().height;
  document.documentElement.style.setProperty("--topbar-height", `${Math.round(top)}px`);
}

if (elements.shareToggle) elements.shareToggle.addEventListener("click", handleShareClick);
if (elements.shareStop) elements.shareStop.addEventListener("click", handleShareStop);
const watchLinks = config.canShare
  ? new WatchLinks(document.getElementById("watch-links"), {
      url: config.watchLinksUrl,
      onMessage: showToast,
    })
  : null;
elements.fitEveryone.addEventListener("click", handleFitClick);
elements.centreOnMe.addEventListener("click", handleCentreOnMe);
elements.retryNow.addEventListener("click", handleRetryNow);
elements.sheetHandle.addEventListener("pointerdown", handleHandleDown);
elements.sheetHandle.addEventListener("pointerup", handleHandleUp);
if (elements.shareInvite && typeof navigator.share === "function") {
  elements.shareInvite.hidden = false;
  elements.shareInvite.addEventListener("click", handleShareInvite);
}
// On a phone the sheet starts as one line: the share control and the count of people.
if (window.matchMedia("(max-width: 700px)").matches) setPanelOpen(false);
elements.panelToggle.addEventListener("click", handlePanelToggle);
elements.followStop.addEventListener("click", unfollow);
if (elements.copyInvite) elements.copyInvite.addEventListener("click", handleCopyInvite);
elements.leaveForm.addEventListener("submit", handleLeaveSubmit);
map.on("dragstart", handleUserMove);
elements.map.addEventListener("wheel", handleUserMove, { passive: true });
map.on("dblclick", handleUserMove);
for (const zoomButton of document.querySelectorAll(".leaflet-control-zoom a")) {
  zoomButton.addEventListener("click", handleUserMove);
}
window.setInterval(handleClockTick, 1000);
const resizeObserver = new ResizeObserver(handlePanelResize);
resizeObserver.observe(elements.panel);
resizeObserver.observe(elements.topbar);
window.addEventListener("resize", handlePanelResize);

// A small handle for tests and debugging in the console.
window.geoshare = {
  config,
  map,
  connection: () => socket.state,
  markers: () => markers.describe(),
  sharing: () => (sharer ? sharer.state : "unavailable"),
  share: myShare,
  browserSource: MY_SOURCE,
  watchLinks: () => watchLinks,
  following: () => state.following,
  userMoved: () => state.userMoved,
  retryAt: () => socket.retryAt,
  bounds: () => {
    const b = map.getBounds();
    return [[b.getSouth(), b.getWest()], [b.getNorth(), b.getEast()]];
  },
  card: () => card.memberId,
  history: () => (historyMode ? historyMode.describe() : null),
  places: () => [...places.places.values()],
  alertRules: () => places.rules,
  clockOffset,
};

socket.start();
renderShare();
resumeShare();
render();
