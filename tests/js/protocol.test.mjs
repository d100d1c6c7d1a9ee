// How the map page takes the server's frames (docs/protocol.md, "Server to client"):
// static/maps/js/protocol.js (main.js's pure part), the member list's status line
// (members.js) and the markers' trail, accuracy, heading and staleness (markers.js).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { MarkerLayer } from "../../static/maps/js/markers.js";
import { statusText } from "../../static/maps/js/members.js";
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
} from "../../static/maps/js/protocol.js";

const NOW = 1763700000000;
const MINUTE = 60000;

// The examples of docs/protocol.md.
const ANA = { id: 12, name: "Ana", color: "#1f77b4", role: "owner", online: true, sharing: true,
              sharing_until: 1763703600000, last_seen: 1763700000000 };
const BO = { id: 13, name: "Bo", color: "#ff7f0e", role: "viewer", online: true, sharing: false,
             sharing_until: null, last_seen: null };
const SNAPSHOT = {
  type: "snapshot", you: 12, now: 1763700000123,
  room: { id: "q3VbTn8dYw0aL1kP", name: "Ski trip", tick_ms: 100, stale_after_ms: 120000,
          trail_ms: 600000 },
  members: [ANA, BO],
  positions: [{ member: 12, lat: 46.05, lon: 14.5, accuracy: 8.0, ts: 1763700000000,
                seen: 1763700000050 }],
};

describe("snapshot", () => {
  test("members by id", () => {
    const members = snapshotMembers(SNAPSHOT);
    assert.deepEqual([...members.keys()], [12, 13]);
    assert.equal(members.get(13), BO);
  });

  test("markers of members with no position in it go", () => {
    assert.deepEqual(goneMembers([12, 13, 14], SNAPSHOT.positions), [13, 14]);
    assert.deepEqual(goneMembers([12], SNAPSHOT.positions), []);
    assert.deepEqual(goneMembers([12, 13], []), [12, 13]);
    assert.deepEqual(goneMembers([], SNAPSHOT.positions), []);
  });

  test("the keep-alive is a third of stale_after_ms, at least a second", () => {
    assert.equal(keepAliveFor(SNAPSHOT.room.stale_after_ms), 40000);
    assert.equal(keepAliveFor(100000), 33333);
    assert.equal(keepAliveFor(1500), 1000);
    assert.equal(keepAliveFor(0), 1000);
  });
});

describe("positions", () => {
  test("a position before anything else about its member: a stand-in", () => {
    assert.deepEqual(placeholderMember(77),
                     { id: 77, name: "…", color: "#64748b", role: "member", online: true });
    assert.notEqual(placeholderMember(77), placeholderMember(77));
  });

  test("without device: the previous position's device", () => {
    const previous = { member: 12, lat: 1, lon: 2, device: "Ana's phone" };
    const position = { member: 12, lat: 1.1, lon: 2.1 };
    const kept = inheritDevice(position, previous);
    assert.equal(kept, position, "the same object, as main.js stores it");
    assert.equal(position.device, "Ana's phone");
  });

  test("a new device name replaces it; \"\" says a browser tab now", () => {
    const previous = { member: 12, device: "Ana's phone" };
    assert.equal(inheritDevice({ member: 12, device: "Ana's tablet" }, previous).device,
                 "Ana's tablet");
    assert.equal(inheritDevice({ member: 12, device: "" }, previous).device, "");
  });

  test("nothing to inherit: the first position, or a browser before", () => {
    assert.equal("device" in inheritDevice({ member: 12 }, undefined), false);
    assert.equal("device" in inheritDevice({ member: 12 }, { member: 12 }), false);
    assert.equal("device" in inheritDevice({ member: 12 }, { member: 12, device: "" }), false);
  });
});

describe("presence and members", () => {
  test("presence: the member with the frame's online", () => {
    const frame = { type: "presence", member: { ...ANA, online: true }, online: false };
    assert.deepEqual(presenceMember(frame), { ...ANA, online: false });
  });

  test("a member merged over what was known; a new name or colour repaints the marker", () => {
    const known = { ...ANA, extra: "kept" };
    const renamed = mergeMember(known, { ...ANA, name: "Ana B." });
    assert.deepEqual(renamed.member, { ...ANA, name: "Ana B.", extra: "kept" });
    assert.equal(renamed.rename, true);
    assert.equal(mergeMember(known, { ...ANA, color: "#000000" }).rename, true);
    const same = mergeMember(known, { ...ANA, online: false, last_seen: NOW });
    assert.equal(same.rename, false);
    assert.equal(same.member.online, false);
    assert.equal(same.member.last_seen, NOW);
  });

  test("a member not known yet: taken as is, nothing to repaint", () => {
    const merged = mergeMember(undefined, BO);
    assert.deepEqual(merged, { member: BO, rename: false });
    assert.notEqual(merged.member, BO);
  });
});

describe("stopped and removed", () => {
  test("the member is no longer sharing and has no end time", () => {
    const member = { ...ANA };
    assert.equal(stopMember(member), member);
    assert.equal(member.sharing, false);
    assert.equal(member.sharing_until, null);
    assert.equal(member.name, "Ana");
  });

  test("an unknown member is fine", () => {
    assert.equal(stopMember(undefined), undefined);
  });
});

describe("error", () => {
  test("invalid ts: send again without the device time, if this page shares", () => {
    const frame = { type: "error", code: "invalid", field: "ts", detail: "ts is too far ahead" };
    assert.equal(errorAction(frame, true), "drop-device-time");
    assert.equal(errorAction(frame, false), null);
  });

  test("another invalid field asks nothing", () => {
    assert.equal(errorAction({ type: "error", code: "invalid", field: "lat" }, true), null);
  });

  test("forbidden is shown, sharing or not", () => {
    assert.equal(errorAction({ type: "error", code: "forbidden", detail: "viewers" }, true),
                 "notice");
    assert.equal(errorAction({ type: "error", code: "forbidden" }, false), "notice");
  });

  test("not_sharing stops this page's sharing", () => {
    assert.equal(errorAction({ type: "error", code: "not_sharing" }, true), "stop-sharing");
    assert.equal(errorAction({ type: "error", code: "not_sharing" }, false), null);
  });

  test("not_the_source stops this page's watch (the share runs elsewhere)", () => {
    assert.equal(errorAction({ type: "error", code: "not_the_source" }, true), "not-the-source");
    assert.equal(errorAction({ type: "error", code: "not_the_source" }, false), null);
  });

  test("the other codes ask nothing of the page", () => {
    for (const code of ["bad_json", "unknown_type", "too_large", "rate_limited", "unavailable"]) {
      assert.equal(errorAction({ type: "error", code }, true), null, code);
    }
  });
});

describe("my share", () => {
  test("as the server last told it", () => {
    assert.deepEqual(shareOf({ ...ANA, source: "device:7", source_name: "Ana's phone" },
                             { state: "off", until: null }),
                     { on: true, until: 1763703600000, source: "device:7",
                       sourceName: "Ana's phone" });
    assert.deepEqual(shareOf({ id: 12, sharing: true }, { state: "off", until: null }),
                     { on: true, until: null, source: "", sourceName: "" });
    assert.deepEqual(shareOf(BO, { state: "on", until: 5 }),
                     { on: false, until: null, source: "", sourceName: "" });
  });

  test("before a snapshot names me: as the page was rendered", () => {
    assert.deepEqual(shareOf(undefined, { state: "on", until: 1763703600000,
                                          source: "browser:abcdefgh", sourceName: "Firefox" }),
                     { on: true, until: 1763703600000, source: "browser:abcdefgh",
                       sourceName: "Firefox" });
    assert.deepEqual(shareOf(undefined, { state: "off", until: null }),
                     { on: false, until: null, source: "", sourceName: "" });
  });
});

// One source per share (issue 25, items 12 and 13): a second browser of the member does
// not start sharing by itself, says where the share runs, and can always stop it.
describe("one source per share", () => {
  const MINE = "browser:laptop-0001";
  const running = (source) => ({ on: true, until: null, source, sourceName: "" });

  test("a page watching its position is on (or locating), whatever the share says", () => {
    assert.equal(shareMode("on", running("device:7"), MINE), "on");
    assert.equal(shareMode("locating", running(MINE), MINE), "locating");
  });

  test("not watching: off, resume (this browser's share), elsewhere (another source)", () => {
    assert.equal(shareMode("off", { on: false, until: null, source: "" }, MINE), "off");
    assert.equal(shareMode("off", running(MINE), MINE), "resume");
    assert.equal(shareMode("off", running("device:7"), MINE), "elsewhere");
    assert.equal(shareMode("off", running("browser:phone-0002"), MINE), "elsewhere");
    assert.equal(shareMode("off", running("device:*"), MINE), "elsewhere");
    assert.equal(shareMode("off", running(""), MINE), "elsewhere");
  });

  test("only the share's own browser resumes it by itself", () => {
    assert.equal(mayResume(running(MINE), MINE), true);
    assert.equal(mayResume(running("device:7"), MINE), false);
    assert.equal(mayResume(running("browser:phone-0002"), MINE), false);
    assert.equal(mayResume(running(""), MINE), false);
    assert.equal(mayResume({ on: false, until: null, source: MINE }, MINE), false);
  });

  test("a browser id is kept, or made once and kept", () => {
    const kept = new Map();
    const storage = { getItem: (k) => kept.get(k) ?? null, setItem: (k, v) => kept.set(k, v) };
    const random = (bytes) => bytes.fill(171);
    const id = browserId(storage, random);
    assert.equal(id, "ab".repeat(12));
    assert.equal(kept.get("geoshare.browser"), id);
    assert.equal(browserId(storage, () => { throw new Error("not asked again"); }), id);
    const refusing = { getItem: () => { throw new Error("no"); }, setItem: () => {
      throw new Error("no"); } };
    assert.equal(browserId(refusing, random), "ab".repeat(12));
    kept.set("geoshare.browser", "bad id!");
    assert.equal(browserId(storage, (bytes) => bytes.fill(1)), "01".repeat(12));
  });
});

// Item 14: the member list and the marker card name the same source.
describe("sourceLabel", () => {
  const MINE = "browser:laptop-0001";
  const position = { member: 12, lat: 1, lon: 2, seen: NOW };

  test("a browser that shared and closed its tab is named, not called a phone", () => {
    const ana = { ...ANA, online: false, source: "browser:laptop-0001",
                  source_name: "Chrome · Linux" };
    assert.equal(sourceLabel(ana, position, { you: false, mine: "" }), "Chrome · Linux");
    assert.equal(sourceLabel(ana, position, { you: true, mine: MINE }), "this browser");
    assert.equal(sourceLabel(ana, position, { you: true, mine: "browser:other-0003" }),
                 "Chrome · Linux");
    const row = memberRow(ana, position, { now: NOW + 60000, staleAfter: 120000, me: null,
                                           you: 13, following: null });
    assert.equal(statusText(row), "Sharing from Chrome · Linux, 1 min ago · 59 min left");
  });

  test("a phone app by its device's name, even in frames that leave the name out", () => {
    const ana = { ...ANA, source: "device:7", source_name: "Ana's phone" };
    assert.equal(sourceLabel(ana, position, { you: false, mine: MINE }), "Ana's phone");
    assert.equal(sourceLabel({ ...ANA, source: "device:*", source_name: "" }, undefined,
                             { you: true, mine: MINE }), "your phone apps");
  });

  test("without a recorded source: the position's device, else a browser", () => {
    assert.equal(sourceLabel(ANA, { ...position, device: "Pixel" }, { you: false, mine: MINE }),
                 "Pixel");
    assert.equal(sourceLabel(ANA, position, { you: false, mine: MINE }), "a browser");
    assert.equal(sourceLabel(ANA, position, { you: true, mine: MINE }), "another browser");
    assert.equal(sourceLabel(ANA, undefined, { you: false, mine: MINE }), "");
  });
});

describe("memberRow", () => {
  const base = { now: NOW, staleAfter: 120000, me: null, you: 12, following: null };

  test("a sharing member, fresh, with battery and device", () => {
    const position = { member: 13, lat: 46.06, lon: 14.5, battery: 81, charging: true,
                       device: "Bo's phone", ts: NOW - 30000, seen: NOW - 12000 };
    const row = memberRow({ ...BO, sharing: true, sharing_until: NOW + 12 * MINUTE }, position,
                          { ...base, me: { lat: 46.05, lon: 14.5 }, following: 13 });
    assert.deepEqual(row, {
      id: 13, name: "Bo", color: "#ff7f0e", role: "viewer", you: false, online: true,
      sharing: true, left: "12 min left", battery: "battery 81% · ⚡ charging",
      device: "Bo's phone", lowBattery: false, stale: false, ago: "12 s ago",
      distance: "1.1 km", following: true,
    });
  });

  test("seen is the server's time; ts only when seen is absent", () => {
    const row = memberRow(ANA, { member: 12, lat: 1, lon: 2, ts: NOW - 3 * MINUTE }, base);
    assert.equal(row.ago, "3 min ago");
    assert.equal(memberRow(ANA, { member: 12, ts: NOW - 3 * MINUTE, seen: NOW }, base).ago,
                 "just now");
  });

  test("stale past stale_after_ms", () => {
    const at = (ms) => memberRow(ANA, { member: 12, lat: 1, lon: 2, seen: NOW - ms }, base);
    assert.equal(at(120000).stale, false);
    assert.equal(at(120001).stale, true);
    assert.equal(at(120001).ago, "2 min ago");
  });

  test("not sharing: last seen from the member, nothing about a position", () => {
    const row = memberRow({ ...BO, online: false, last_seen: NOW - 3 * 3600000 }, undefined,
                          { ...base, me: { lat: 0, lon: 0 } });
    assert.equal(row.sharing, false);
    assert.equal(row.stale, false);
    assert.equal(row.ago, "3 h ago");
    assert.equal(row.battery, "");
    assert.equal(row.device, "");
    assert.equal(row.distance, "");
    assert.equal(row.left, "");
    assert.equal(row.online, false);
    assert.equal(memberRow(BO, undefined, base).ago, "", "last_seen null: no ago");
  });

  test("me: no distance to myself; the share's time left", () => {
    const row = memberRow(ANA, { member: 12, lat: 46.05, lon: 14.5, seen: NOW },
                          { ...base, me: { lat: 46.05, lon: 14.5 } });
    assert.equal(row.you, true);
    assert.equal(row.distance, "");
    assert.equal(row.left, "1 h left");
  });

  test("an open-ended share has no time left; low battery at 20 % and below", () => {
    const member = { ...ANA, id: 14, sharing_until: null };
    const at = (battery) => memberRow(member, { member: 14, lat: 1, lon: 2, seen: NOW, battery },
                                      base);
    assert.equal(at(20).left, "");
    assert.equal(at(20).lowBattery, true);
    assert.equal(at(21).lowBattery, false);
    assert.equal(at(undefined).lowBattery, false);
    assert.equal(at(undefined).battery, "");
  });

  test("the list's order: me, sharing, stale, online, the rest; by name within", () => {
    const rows = [
      { name: "Zed", you: false, sharing: false, stale: false, online: false },
      { name: "Cid", you: false, sharing: true, stale: true, online: true },
      { name: "Eve", you: false, sharing: false, stale: false, online: true },
      { name: "Bea", you: false, sharing: true, stale: false, online: false },
      { name: "Ana", you: false, sharing: true, stale: false, online: true },
      { name: "Max", you: true, sharing: false, stale: false, online: false },
      { name: "Abe", you: false, sharing: false, stale: false, online: false },
    ];
    assert.deepEqual(rows.sort(compareRows).map((r) => r.name),
                     ["Max", "Ana", "Bea", "Cid", "Eve", "Abe", "Zed"]);
  });
});

describe("members.js statusText", () => {
  const row = { online: true, sharing: true, stale: false, ago: "12 s ago", device: "",
                left: "", battery: "", distance: "", role: "member" };

  test("online and sharing from a browser, or from a named device", () => {
    assert.equal(statusText(row), "Online · sharing, 12 s ago");
    assert.equal(statusText({ ...row, device: "Pixel" }), "Online · sharing from Pixel, 12 s ago");
  });

  test("online, stale", () => {
    assert.equal(statusText({ ...row, stale: true, ago: "5 min ago" }),
                 "Online · stale, last seen 5 min ago");
  });

  test("positions with no page open: sharing from the share's source, by name", () => {
    assert.equal(statusText({ ...row, online: false }), "Sharing, 12 s ago");
    assert.equal(statusText({ ...row, online: false, device: "Pixel" }),
                 "Sharing from Pixel, 12 s ago");
  });

  test("offline and stale; offline and not sharing", () => {
    assert.equal(statusText({ ...row, online: false, stale: true, ago: "3 h ago" }),
                 "Offline · stale, last seen 3 h ago");
    assert.equal(statusText({ ...row, online: false, sharing: false, ago: "2 d ago" }),
                 "Offline · last seen 2 d ago");
    assert.equal(statusText({ ...row, online: false, sharing: false, ago: "" }), "Offline");
    assert.equal(statusText({ ...row, sharing: false }), "Online");
  });

  test("time left, battery, distance and the viewer role follow, in that order", () => {
    assert.equal(statusText({ ...row, left: "12 min left", battery: "battery 62%",
                              distance: "1.1 km", role: "viewer" }),
                 "Online · sharing, 12 s ago · 12 min left · battery 62% · 1.1 km · viewer");
  });

  test("a row from memberRow reads end to end", () => {
    const position = { member: 13, lat: 46.06, lon: 14.5, battery: 15, charging: false,
                       seen: NOW - 2 * MINUTE - 1 };
    const data = memberRow({ ...BO, online: false, sharing: true }, position,
                           { now: NOW, staleAfter: 120000, me: null, you: 12, following: null });
    assert.equal(statusText(data),
                 "Offline · stale, last seen 2 min ago · battery 15% · not charging · viewer");
    assert.equal(data.lowBattery, true);
  });
});

// -- markers.js: a MarkerLayer's items, with stand-ins for the Leaflet layers ---------

function fakeItem(id = 12) {
  const calls = { trail: [], trailStyle: [], radius: [], circleStyle: [], classes: [] };
  return {
    calls,
    item: {
      id,
      points: [],
      stale: false,
      position: null,
      trail: {
        setLatLngs: (latlngs) => calls.trail.push(latlngs),
        setStyle: (style) => calls.trailStyle.push(style),
      },
      circle: {
        setRadius: (radius) => calls.radius.push(radius),
        setStyle: (style) => calls.circleStyle.push(style),
      },
      parts: {
        arrow: { hidden: true, style: {} },
        ago: { textContent: "" },
        root: { classList: { toggle: (name, on) => calls.classes.push([name, on]) } },
      },
    },
  };
}

describe("markers.js MarkerLayer", () => {
  test("trail_ms from the snapshot: a finite, non-negative number only", () => {
    const layer = new MarkerLayer(null);
    assert.equal(layer.trailMs, 600000);
    layer.setTrailMs(300000);
    assert.equal(layer.trailMs, 300000);
    for (const bad of [undefined, null, -1, NaN, "60000"]) layer.setTrailMs(bad);
    assert.equal(layer.trailMs, 300000);
    layer.setTrailMs(0);
    assert.equal(layer.trailMs, 0);
  });

  test("the trail: a point per new place, ones older than trail_ms dropped", () => {
    const layer = new MarkerLayer(null, { trailMs: 10 * MINUTE });
    const { item, calls } = fakeItem();
    layer.extendTrail(item, { lat: 46, lng: 14 }, NOW);
    layer.extendTrail(item, { lat: 46, lng: 14 }, NOW + 1000); // the same place: no point
    layer.extendTrail(item, { lat: 46.1, lng: 14 }, NOW + 5 * MINUTE);
    assert.deepEqual(item.points.map((p) => p.at), [NOW, NOW + 5 * MINUTE]);
    layer.extendTrail(item, { lat: 46.2, lng: 14.1 }, NOW + 12 * MINUTE);
    assert.deepEqual(calls.trail.at(-1), [[46.1, 14], [46.2, 14.1]]);
    // A trail is never emptied by age: the newest point stays.
    layer.pruneTrail(item, NOW + 60 * MINUTE);
    assert.deepEqual(calls.trail.at(-1), [[46.2, 14.1]]);
  });

  test("accuracy: a circle of that radius; none when unknown or 0", () => {
    const layer = new MarkerLayer(null);
    const { item, calls } = fakeItem();
    layer.updateAccuracy(item, { accuracy: 8 });
    layer.updateAccuracy(item, {});
    layer.updateAccuracy(item, { accuracy: 0 });
    assert.deepEqual(calls.radius, [8, 0, 0]);
    assert.deepEqual(calls.circleStyle, [{ opacity: 0.5, fillOpacity: 0.12 },
                                         { opacity: 0, fillOpacity: 0 },
                                         { opacity: 0, fillOpacity: 0 }]);
  });

  test("heading: the arrow turned to it; hidden when unknown", () => {
    const layer = new MarkerLayer(null);
    const { item } = fakeItem();
    layer.updateHeading(item, { heading: 270 });
    assert.equal(item.parts.arrow.hidden, false);
    assert.equal(item.parts.arrow.style.transform, "rotate(270deg)");
    layer.updateHeading(item, {});
    assert.equal(item.parts.arrow.hidden, true);
  });

  test("refresh: stale markers fade and say how long ago", () => {
    const layer = new MarkerLayer(null);
    const { item, calls } = fakeItem(12);
    const other = fakeItem(13);
    item.position = { accuracy: 10 };
    layer.items.set(12, item);
    layer.items.set(13, other.item);
    layer.refresh(NOW, new Set([12]), new Map([[12, "3 min ago"]]));
    assert.equal(item.stale, true);
    assert.equal(item.parts.ago.textContent, "3 min ago");
    assert.deepEqual(calls.classes, [["is-stale", true]]);
    assert.deepEqual(calls.trailStyle, [{ opacity: 0.25, dashArray: "4 6" }]);
    assert.deepEqual(calls.circleStyle, [{ opacity: 0.2, fillOpacity: 0.05 }]);
    assert.equal(other.item.stale, false);
    assert.equal(other.item.parts.ago.textContent, "");
    assert.deepEqual(other.calls.classes, []);
    // Fresh again (a new position): back to normal, the label cleared.
    layer.refresh(NOW, new Set(), new Map());
    assert.equal(item.stale, false);
    assert.equal(item.parts.ago.textContent, "");
    assert.deepEqual(calls.classes.at(-1), ["is-stale", false]);
  });

  test("ids, targets and targetOf", () => {
    const layer = new MarkerLayer(null);
    layer.items.set(12, { target: { lat: 46.05, lng: 14.5 } });
    layer.items.set(13, { target: { lat: 45.8, lng: 15.98 } });
    assert.deepEqual(layer.ids(), [12, 13]);
    assert.deepEqual(layer.targets(), [[46.05, 14.5], [45.8, 15.98]]);
    assert.deepEqual(layer.targetOf(13), { lat: 45.8, lng: 15.98 });
    assert.equal(layer.targetOf(99), null);
  });
});
