// The page a "watch me" link opens: one member's live marker, accuracy, trail, when
// the position came and the share's time left; nothing else of the room
// (docs/protocol.md, "Watch-me links").

import { serverNow, syncClock } from "./clock.js";
import { formatAgo, formatLeft, t, tf } from "./format.js";
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
// What the server said (docs/protocol.md, "Watch-me links"): the share and the latest
// position of the one member this link shows, under a constant id.
const state = { member: null, position: null, staleAfter: 120000, centred: false, ended: false };

function shown(member) {
  return { id: member.id, name: "", color: config.color };
}

function clearMarker() {
  state.position = null;
  for (const id of markers.ids()) markers.remove(id);
}

function handleFrame(frame) {
  if (state.ended) return;
  switch (frame.type) {
    case "snapshot":
      syncClock(frame.now);
      state.staleAfter = frame.stale_after_ms;
      markers.setTrailMs(frame.trail_ms);
      state.member = frame.member;
      clearMarker();
      if (frame.position) show(frame.position);
      break;
    case "positions":
      for (const position of frame.positions) show(position);
      break;
    case "share":
      state.member = frame.member;
      if (!frame.member.sharing) clearMarker();
      break;
    case "stopped":
      clearMarker();
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
  const member = state.member || { id: position.member, sharing: true, sharing_until: null };
  markers.update(shown(member), position, position.seen);
  if (!state.centred) {
    map.setView([position.lat, position.lon], 16);
    state.centred = true;
  }
}

function render() {
  const parts = [];
  const now = serverNow();
  if (state.ended) {
    parts.push(t("This link has ended."));
  } else if (state.position) {
    parts.push(tf("Last seen %(ago)s", { ago: formatAgo(now - state.position.seen) }));
    if (state.position.accuracy !== undefined) {
      parts.push(`±${Math.round(state.position.accuracy)} m`);
    }
  } else if (state.member && !state.member.sharing) {
    parts.push(t("Not sharing a position right now"));
  } else {
    parts.push(t("Waiting for a position…"));
  }
  // The same words and rounding as the member list's (format.js formatLeft).
  if (!state.ended && state.member && state.member.sharing && state.member.sharing_until) {
    parts.push(formatLeft(state.member.sharing_until, now));
  }
  elements.status.textContent = parts.join(" · ");
  const labels = new Map();
  const stale = new Set();
  if (state.position) {
    const seen = state.position.seen;
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
    // Revoked or ended: nothing of the share is left on the page, no time left.
    elements.notice.textContent = detail;
    elements.notice.hidden = false;
    state.ended = true;
    state.member = null;
    clearMarker();
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
