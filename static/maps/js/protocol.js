// The pure part of how the map page (main.js) takes the server's frames
// (docs/protocol.md): merging members, keeping a device's name, what an error asks
// for, and the member list's rows. No DOM, no map, no socket: tests/js runs it in node.

import {
  LOW_BATTERY,
  distanceMeters,
  formatAgo,
  formatDistance,
  formatLeft,
  formatPower,
} from "./format.js";

// A still device re-sends its position well within the stale threshold.
export function keepAliveFor(staleAfterMs) {
  return Math.max(1000, Math.floor(staleAfterMs / 3));
}

// A snapshot's members by id.
export function snapshotMembers(frame) {
  return new Map(frame.members.map((member) => [member.id, member]));
}

// Of the members with a marker (`ids`), those without a position in a snapshot's
// `positions`: their markers go.
export function goneMembers(ids, positions) {
  const live = new Set(positions.map((position) => position.member));
  return ids.filter((id) => !live.has(id));
}

// A position can come before anything else about its member: a stand-in until a
// snapshot, presence or members frame names them.
export function placeholderMember(id) {
  return { id, name: "…", color: "#64748b", role: "member", online: true };
}

// A positions frame names the device only when it changed: without `device`, the
// position keeps the previous position's (set on `position` itself, which is returned).
export function inheritDevice(position, previous) {
  if (!("device" in position) && previous !== undefined && previous.device) {
    position.device = previous.device;
  }
  return position;
}

// The member a presence frame describes, with its online state.
export function presenceMember(frame) {
  return { ...frame.member, online: frame.online };
}

// A presence or members frame's member over what the page knew of them; `rename`
// when the marker must be repainted (a known member's name or colour changed).
export function mergeMember(known, member) {
  return {
    member: { ...known, ...member },
    rename: Boolean(known) && (known.name !== member.name || known.color !== member.color),
  };
}

// A stopped (or removed) member: no longer sharing, no end time.
export function stopMember(member) {
  if (member) {
    member.sharing = false;
    member.sharing_until = null;
  }
  return member;
}

// What an error frame asks of the page: "drop-device-time" (the server refused our
// device time: send again without it), "notice" (show its detail), "stop-sharing"
// (our share has ended), or null. `canShare`: this page shares a location.
export function errorAction(frame, canShare) {
  if (frame.code === "invalid" && frame.field === "ts" && canShare) return "drop-device-time";
  if (frame.code === "forbidden") return "notice";
  if (frame.code === "not_sharing" && canShare) return "stop-sharing";
  return null;
}

// The member's own share as the server last told it (`member`, or undefined before a
// snapshot names them), else as the page was rendered (`fallback`: config.share).
export function shareOf(member, fallback) {
  if (member !== undefined) {
    return { on: Boolean(member.sharing), until: member.sharing_until ?? null };
  }
  return { on: fallback.state === "on", until: fallback.until };
}

// One row of the member list (members.js): `position` is the member's live position
// (undefined when not sharing); `me` my own position ({lat, lon}) or null, `you` my
// member id, `following` the followed member's id or null; `now` server time.
export function memberRow(member, position, { now, staleAfter, me, you, following }) {
  const sharing = position !== undefined;
  const seen = sharing ? (position.seen ?? position.ts) : member.last_seen;
  const stale = sharing && now - seen > staleAfter;
  const ago = Number.isFinite(seen) ? formatAgo(now - seen) : "";
  let distance = "";
  if (me && sharing && member.id !== you) {
    distance = formatDistance(distanceMeters(me, position));
  }
  return {
    id: member.id,
    name: member.name,
    color: member.color,
    role: member.role,
    you: member.id === you,
    online: Boolean(member.online),
    sharing,
    left: member.sharing ? formatLeft(member.sharing_until, now) : "",
    battery: sharing ? formatPower(position.battery, position.charging) : "",
    device: sharing && position.device ? position.device : "",
    lowBattery: sharing && Number.isFinite(position.battery) && position.battery <= LOW_BATTERY,
    stale,
    ago,
    distance,
    following: following === member.id,
  };
}

// The list's order: me, then sharing and fresh, sharing but stale, online, the rest;
// by name within each.
function rank(row) {
  if (row.you) return 0;
  if (row.sharing && !row.stale) return 1;
  if (row.sharing) return 2;
  if (row.online) return 3;
  return 4;
}

export function compareRows(a, b) {
  return rank(a) - rank(b) || a.name.localeCompare(b.name);
}
