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
  t,
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
// (our share has ended), "not-the-source" (the share runs from another device or
// browser: stop watching here), or null. `canShare`: this page shares a location.
export function errorAction(frame, canShare) {
  if (frame.code === "invalid" && frame.field === "ts" && canShare) return "drop-device-time";
  if (frame.code === "forbidden") return "notice";
  if (frame.code === "not_sharing" && canShare) return "stop-sharing";
  if (frame.code === "not_the_source" && canShare) return "not-the-source";
  return null;
}

// The member's own share as the server last told it (`member`, or undefined before a
// snapshot names them), else as the page was rendered (`fallback`: config.share).
// `source` and `sourceName` say where it runs from (docs/protocol.md, "One source per
// share"): "" when not recorded.
export function shareOf(member, fallback) {
  if (member !== undefined) {
    return { on: Boolean(member.sharing), until: member.sharing_until ?? null,
             source: member.source ?? "", sourceName: member.source_name ?? "" };
  }
  return { on: fallback.state === "on", until: fallback.until,
           source: fallback.source ?? "", sourceName: fallback.sourceName ?? "" };
}

// A browser's id for "One source per share": kept in `storage` (localStorage) under
// "geoshare.browser", made from `random(bytes)` (crypto.getRandomValues) the first
// time; without storage, an id for this page only.
export function browserId(storage, random) {
  try {
    const kept = storage && storage.getItem("geoshare.browser");
    if (kept && /^[A-Za-z0-9_-]{8,64}$/.test(kept)) return kept;
  } catch {
    // Storage refused (a private window): an id for this page.
  }
  const id = Array.from(random(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0"))
    .join("");
  try {
    if (storage) storage.setItem("geoshare.browser", id);
  } catch {
    // As above.
  }
  return id;
}

// What the share control shows, from this page's sharer (`sharerState`: "off",
// "locating", "on"), the member's share (shareOf) and this browser's source (`mine`,
// "browser:<id>"): "locating" or "on" (watching here), "off" (no share), "resume"
// (the share runs from this browser, not watched now: after a reload without the
// permission), or "elsewhere" (it runs from another device or browser: only an explicit
// "Share from here instead" moves it here). Stop is offered in all but "off".
export function shareMode(sharerState, share, mine) {
  if (sharerState === "locating" || sharerState === "on") return sharerState;
  if (!share.on) return "off";
  return share.source === mine ? "resume" : "elsewhere";
}

// Whether this page starts watching the position by itself (after a reload): only for a
// running share whose source is this browser.
export function mayResume(share, mine) {
  return share.on && share.source !== "" && share.source === mine;
}

// Where a member's share comes from, as the member list and the marker card both name
// it: `member` (snapshot member), `position` (their live position or undefined), `you`
// (it is this page's member), `mine` (this browser's source).
export function sourceLabel(member, position, { you, mine }) {
  const source = member?.source ?? "";
  if (source && source === mine) return t("this browser");
  if (source === "device:*") return you ? t("your phone apps") : t("their phone apps");
  if (member?.source_name) return member.source_name;
  if (position?.device) return position.device;
  if (source.startsWith("browser:")) return you ? t("another browser") : t("a browser");
  // A position without a device name came from a browser tab (docs/protocol.md).
  if (position === undefined) return "";
  return you ? t("another browser") : t("a browser");
}

// One row of the member list (members.js): `position` is the member's live position
// (undefined when not sharing); `me` my own position ({lat, lon}) or null, `you` my
// member id, `following` the followed member's id or null; `now` server time.
export function memberRow(member, position, { now, staleAfter, me, you, following,
                                             mine = "" }) {
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
    device: sharing ? sourceLabel(member, position, { you: member.id === you, mine }) : "",
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
