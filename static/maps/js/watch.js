// The page a "watch me" link opens: one member's live marker, accuracy, trail, last
// seen and time left; nothing else of the room (docs/protocol.md, "Watch links").

import { serverNow, syncClock } from "./clock.js";
import { formatAgo, t, tf } from "./format.js";
import { createMap } from "./map.js";
import { MarkerLayer } from "./markers.js";
import { RoomSocket } from "./socket.js";

const config = JSON.parse(document.getElementById("geoshare-config").textContent);
const ENDED = new Map([
  [4403, t("The person who shared this link revoked it.")],
  [4404, t("This link has ended.")],
]);

const elements = {
  map: document.getElementById("map"),
  connection: document.getElementById("connection"),
  notice: document.getElementById("notice"),
  status: document.getElementById("watch-status"),
};

const map = createMap(elements.map, config);
const markers = new MarkerLayer(map);
const state = { member: null, position: null, staleAfter: 120000, centred: false };

function shown(member) {
  return { ...member, name: "", color: member.color || config.color };
}

function handleFrame(frame) {
  switch (frame.type) {
    case "snapshot":
      syncClock(frame.now);
      state.staleAfter = frame.room.stale_after_ms;
      markers.setTrailMs(frame.room.trail_ms);
      state.member = frame.members[0] || null;
      state.position = frame.positions[0] || null;
      if (state.position === null) {
        for (const id of markers.ids()) markers.remove(id);
      }
      if (state.position) show(state.position);
      break;
    case "positions":
      for (const position of frame.positions) show(position);
      break;
    case "presence":
      state.member = frame.member;
      break;
    case "stopped":
    case "removed":
      state.position = null;
      for (const id of markers.ids()) markers.remove(id);
      break;
    case "pong":
      syncClock(frame.now);
      break;
    default:
      break;
  }
  render();
}

function show(position) {
  state.position = position;
  if (state.member === null) state.member = { id: position.member, color: config.color };
  markers.update(shown(state.member), position, position.seen ?? position.ts);
  if (!state.centred) {
    map.setView([position.lat, position.lon], 16);
    state.centred = true;
  }
}

function timeLeft(until) {
  const minutes = Math.max(0, Math.round((until - serverNow()) / 60000));
  if (minutes < 60) return t("%s min left").replace("%s", String(minutes));
  return tf("%(hours)s h %(minutes)s min left", { hours: Math.floor(minutes / 60), minutes: minutes % 60 });
}

function render() {
  const parts = [];
  const now = serverNow();
  if (state.position) {
    const seen = state.position.seen ?? state.position.ts;
    parts.push(tf("Last seen %(ago)s", { ago: formatAgo(now - seen) }));
    if (state.position.accuracy !== undefined) {
      parts.push(`±${Math.round(state.position.accuracy)} m`);
    }
  } else {
    parts.push(t("Not sharing a position right now"));
  }
  if (state.member && state.member.sharing_until) parts.push(timeLeft(state.member.sharing_until));
  elements.status.textContent = parts.join(" · ");
  const labels = new Map();
  const stale = new Set();
  if (state.position) {
    const seen = state.position.seen ?? state.position.ts;
    labels.set(state.position.member, formatAgo(now - seen));
    if (now - seen > state.staleAfter) stale.add(state.position.member);
  }
  markers.refresh(now, stale, labels);
}

function handleConnectionState(connection, detail) {
  elements.connection.dataset.state = connection;
  elements.connection.textContent = {
    connecting: t("Connecting…"),
    connected: t("Live"),
    reconnecting: t("Reconnecting…"),
    closed: t("Ended"),
  }[connection];
  if (connection === "closed") {
    elements.notice.textContent = detail;
    elements.notice.hidden = false;
    state.position = null;
    for (const id of markers.ids()) markers.remove(id);
    render();
  }
}

const socket = new RoomSocket(config.socketPath, {
  onFrame: handleFrame,
  onState: handleConnectionState,
  finalCloseCodes: ENDED,
});
socket.start();
window.setInterval(render, 1000);
window.geoshareWatch = { state, socket };
