// static/maps/js/timeline.js: the history mode's ranges, tracks and times. Local time
// is UTC (make test-js sets TZ=UTC); one suite moves to Europe/Ljubljana for DST days.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  flatten,
  formatDuration,
  formatMoment,
  isSameDay,
  localDate,
  localDateTime,
  positionAt,
  rangeFor,
} from "../../static/maps/js/timeline.js";

const MINUTE = 60000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const NOW = Date.UTC(2025, 10, 21, 14, 30, 15); // Fri 21 Nov 2025 14:30:15 UTC

test("the suite runs in UTC", () => {
  assert.equal(process.env.TZ, "UTC", "run with TZ=UTC (make test-js)");
  assert.equal(new Date(NOW).getHours(), 14);
});

describe("rangeFor", () => {
  test("hour: the last 60 minutes up to now", () => {
    assert.deepEqual(rangeFor("hour", NOW), { since: NOW - HOUR, until: NOW });
  });

  test("today: from local midnight to now", () => {
    assert.deepEqual(rangeFor("today", NOW), { since: Date.UTC(2025, 10, 21), until: NOW });
  });

  test("today, one millisecond after midnight", () => {
    const now = Date.UTC(2025, 10, 21) + 1;
    assert.deepEqual(rangeFor("today", now), { since: Date.UTC(2025, 10, 21), until: now });
  });

  test("yesterday: the whole previous local day", () => {
    assert.deepEqual(rangeFor("yesterday", NOW),
                     { since: Date.UTC(2025, 10, 20), until: Date.UTC(2025, 10, 21) });
  });

  test("yesterday across a month and a year", () => {
    assert.deepEqual(rangeFor("yesterday", Date.UTC(2026, 0, 1, 8)),
                     { since: Date.UTC(2025, 11, 31), until: Date.UTC(2026, 0, 1) });
  });

  test("day: that local day, midnight to midnight", () => {
    assert.deepEqual(rangeFor("day", NOW, { day: "2025-11-03" }),
                     { since: Date.UTC(2025, 10, 3), until: Date.UTC(2025, 10, 4) });
    assert.deepEqual(rangeFor("day", NOW, { day: "2024-02-29" }),
                     { since: Date.UTC(2024, 1, 29), until: Date.UTC(2024, 2, 1) });
  });

  test("day without a day, or with a bad one, is incomplete", () => {
    assert.equal(rangeFor("day", NOW), null);
    assert.equal(rangeFor("day", NOW, {}), null);
    assert.equal(rangeFor("day", NOW, { day: "" }), null);
    assert.equal(rangeFor("day", NOW, { day: "not a day" }), null);
    assert.equal(rangeFor("day", NOW, { day: "2025-13-40" }), null);
  });

  test("span: from and to, local", () => {
    assert.deepEqual(rangeFor("span", NOW, { from: "2025-11-21T08:00", to: "2025-11-21T09:30" }),
                     { since: Date.UTC(2025, 10, 21, 8), until: Date.UTC(2025, 10, 21, 9, 30) });
    assert.deepEqual(rangeFor("span", NOW, { from: "2025-11-20T22:15", to: "2025-11-22T01:00" }),
                     { since: Date.UTC(2025, 10, 20, 22, 15), until: Date.UTC(2025, 10, 22, 1) });
  });

  test("span with an end missing, bad, equal or before the start is incomplete", () => {
    assert.equal(rangeFor("span", NOW), null);
    assert.equal(rangeFor("span", NOW, { from: "2025-11-21T08:00" }), null);
    assert.equal(rangeFor("span", NOW, { to: "2025-11-21T08:00" }), null);
    assert.equal(rangeFor("span", NOW, { from: "2025-11-21T08:00", to: "later" }), null);
    assert.equal(rangeFor("span", NOW, { from: "2025-11-21T08:00", to: "2025-11-21T08:00" }), null);
    assert.equal(rangeFor("span", NOW, { from: "2025-11-21T09:00", to: "2025-11-21T08:00" }), null);
  });

  test("an unknown choice is null", () => {
    assert.equal(rangeFor("week", NOW), null);
    assert.equal(rangeFor("", NOW), null);
    assert.equal(rangeFor(undefined, NOW), null);
  });
});

describe("in a zone with daylight saving time (Europe/Ljubljana)", () => {
  before(() => {
    process.env.TZ = "Europe/Ljubljana";
  });
  after(() => {
    process.env.TZ = "UTC";
  });

  test("the day the clocks go forward is 23 hours long", () => {
    const range = rangeFor("yesterday", Date.UTC(2025, 2, 31, 8)); // Mon 31 Mar, 10:00 CEST
    // Sun 30 Mar 00:00 CET is 29 Mar 23:00 UTC; Mon 31 Mar 00:00 CEST is 30 Mar 22:00 UTC.
    assert.deepEqual(range, { since: Date.UTC(2025, 2, 29, 23), until: Date.UTC(2025, 2, 30, 22) });
    assert.equal(range.until - range.since, 23 * HOUR);
  });

  test("the day the clocks go back is 25 hours long", () => {
    const range = rangeFor("day", NOW, { day: "2025-10-26" });
    assert.deepEqual(range, { since: Date.UTC(2025, 9, 25, 22), until: Date.UTC(2025, 9, 26, 23) });
    assert.equal(range.until - range.since, 25 * HOUR);
  });

  test("today starts at local midnight, not UTC's", () => {
    assert.deepEqual(rangeFor("today", NOW), { since: Date.UTC(2025, 10, 20, 23), until: NOW });
  });

  test("local dates and spans are read in the zone", () => {
    assert.equal(localDate(Date.UTC(2025, 10, 20, 23, 30)), "2025-11-21");
    assert.equal(localDateTime(Date.UTC(2025, 6, 1, 22, 5)), "2025-07-02T00:05");
    assert.deepEqual(rangeFor("span", NOW, { from: "2025-07-01T12:00", to: "2025-07-01T13:00" }),
                     { since: Date.UTC(2025, 6, 1, 10), until: Date.UTC(2025, 6, 1, 11) });
  });
});

const LINE = {
  type: "Feature",
  geometry: { type: "LineString", coordinates: [[14.5, 46.0], [14.6, 46.1], [14.8, 46.3]] },
  properties: { member: 12, times: [1000, 2000, 4000] },
};

const MULTI = {
  type: "Feature",
  geometry: {
    type: "MultiLineString",
    coordinates: [[[14.5, 46.0], [14.6, 46.1]], [[15.0, 45.0], [15.2, 45.4]]],
  },
  properties: { member: 13, times: [[1000, 2000], [10000, 12000]] },
};

describe("flatten", () => {
  test("a LineString: times, points as [lat, lon], all on part 0", () => {
    assert.deepEqual(flatten(LINE), {
      times: [1000, 2000, 4000],
      points: [[46.0, 14.5], [46.1, 14.6], [46.3, 14.8]],
      part: [0, 0, 0],
    });
  });

  test("a MultiLineString: one after the other, each point with its line", () => {
    assert.deepEqual(flatten(MULTI), {
      times: [1000, 2000, 10000, 12000],
      points: [[46.0, 14.5], [46.1, 14.6], [45.0, 15.0], [45.4, 15.2]],
      part: [0, 0, 1, 1],
    });
  });

  test("an empty line flattens to nothing", () => {
    const empty = { geometry: { type: "LineString", coordinates: [] }, properties: { times: [] } };
    assert.deepEqual(flatten(empty), { times: [], points: [], part: [] });
  });
});

function near(actual, expected) {
  assert.equal(actual.moving, expected.moving);
  assert.ok(Math.abs(actual.lat - expected.lat) < 1e-9, `lat ${actual.lat} != ${expected.lat}`);
  assert.ok(Math.abs(actual.lon - expected.lon) < 1e-9, `lon ${actual.lon} != ${expected.lon}`);
}

describe("positionAt", () => {
  const line = flatten(LINE);
  const multi = flatten(MULTI);

  test("no points: nowhere", () => {
    assert.equal(positionAt({ times: [], points: [], part: [] }, 5000), null);
  });

  test("before the first point: nowhere yet", () => {
    assert.equal(positionAt(line, 999), null);
    assert.equal(positionAt(line, -1), null);
  });

  test("at the first point, moving towards the second", () => {
    assert.deepEqual(positionAt(line, 1000), { lat: 46.0, lon: 14.5, moving: true });
  });

  test("between two points: linear in time", () => {
    near(positionAt(line, 1500), { lat: 46.05, lon: 14.55, moving: true });
    near(positionAt(line, 3000), { lat: 46.2, lon: 14.7, moving: true });
    near(positionAt(line, 3500), { lat: 46.25, lon: 14.75, moving: true });
  });

  test("at an inner point exactly: that point", () => {
    near(positionAt(line, 2000), { lat: 46.1, lon: 14.6, moving: true });
  });

  test("at and after the last point: held there, not moving", () => {
    assert.deepEqual(positionAt(line, 4000), { lat: 46.3, lon: 14.8, moving: false });
    assert.deepEqual(positionAt(line, 1e13), { lat: 46.3, lon: 14.8, moving: false });
  });

  test("a gap between two lines: held at the first line's last point", () => {
    assert.deepEqual(positionAt(multi, 2000), { lat: 46.1, lon: 14.6, moving: false });
    assert.deepEqual(positionAt(multi, 5000), { lat: 46.1, lon: 14.6, moving: false });
    assert.deepEqual(positionAt(multi, 9999), { lat: 46.1, lon: 14.6, moving: false });
  });

  test("on the second line: linear again", () => {
    near(positionAt(multi, 11000), { lat: 45.2, lon: 15.1, moving: true });
    assert.deepEqual(positionAt(multi, 12000), { lat: 45.4, lon: 15.2, moving: false });
  });

  test("two points at the same time: the later one, no division by zero", () => {
    const flat = { times: [1000, 2000, 2000, 3000], points: [[1, 1], [2, 2], [3, 3], [4, 4]],
                   part: [0, 0, 0, 0] };
    assert.deepEqual(positionAt(flat, 2000), { lat: 3, lon: 3, moving: true });
    near(positionAt(flat, 1500), { lat: 1.5, lon: 1.5, moving: true });
    near(positionAt(flat, 2500), { lat: 3.5, lon: 3.5, moving: true });
  });

  test("a single point: nowhere before it, there from then on", () => {
    const flat = { times: [5000], points: [[46, 14]], part: [0] };
    assert.equal(positionAt(flat, 4999), null);
    assert.deepEqual(positionAt(flat, 5000), { lat: 46, lon: 14, moving: false });
  });

  test("a long track: the binary search finds the right pair", () => {
    const times = [];
    const points = [];
    for (let i = 0; i < 1000; i += 1) {
      times.push(i * 1000);
      points.push([i, -i]);
    }
    const flat = { times, points, part: times.map(() => 0) };
    near(positionAt(flat, 123456), { lat: 123.456, lon: -123.456, moving: true });
    near(positionAt(flat, 998500), { lat: 998.5, lon: -998.5, moving: true });
  });
});

describe("formatDuration", () => {
  const cases = [
    [0, "0 s"],
    [400, "0 s"],
    [40000, "40 s"],
    [59000, "59 s"],
    [MINUTE, "1 min"],
    [12 * MINUTE + 59000, "12 min"],
    [59 * MINUTE, "59 min"],
    [HOUR, "1 h 00 min"],
    [HOUR + 5 * MINUTE, "1 h 05 min"],
    [2 * HOUR + 45 * MINUTE, "2 h 45 min"],
    [26 * HOUR, "26 h 00 min"],
    [-5000, "0 s"],
  ];
  for (const [ms, text] of cases) {
    test(`${ms} ms -> ${text}`, () => assert.equal(formatDuration(ms), text));
  }
});

describe("isSameDay", () => {
  const midnight = Date.UTC(2025, 10, 21);
  test("a range within one local day", () => {
    assert.equal(isSameDay(midnight + 10 * HOUR, midnight + 12 * HOUR), true);
  });

  test("a whole day up to the next midnight (the end is exclusive)", () => {
    assert.equal(isSameDay(midnight, midnight + DAY), true);
  });

  test("a range past midnight is two days", () => {
    assert.equal(isSameDay(midnight + 23 * HOUR, midnight + DAY + 1), false);
    assert.equal(isSameDay(midnight - 1, midnight + HOUR), false);
  });
});

describe("formatMoment", () => {
  const moment = Date.UTC(2025, 10, 21, 9, 7, 5);
  test("within a day: the time alone, with seconds", () => {
    const text = formatMoment(moment, true);
    assert.match(text, /09:07:05/);
    assert.doesNotMatch(text, /21|Nov/);
  });

  test("across days: the day and the time, no seconds", () => {
    const text = formatMoment(moment, false);
    assert.match(text, /21/);
    assert.match(text, /Nov/);
    assert.match(text, /09:07/);
    assert.doesNotMatch(text, /:05/);
  });
});

describe("localDate and localDateTime", () => {
  test("zero-padded local date and minute", () => {
    const moment = Date.UTC(2025, 0, 5, 7, 3, 59);
    assert.equal(localDate(moment), "2025-01-05");
    assert.equal(localDateTime(moment), "2025-01-05T07:03");
    assert.equal(localDate(Date.UTC(2025, 11, 31, 23, 59)), "2025-12-31");
    assert.equal(localDateTime(Date.UTC(2025, 11, 31, 23, 59, 59, 999)), "2025-12-31T23:59");
  });

  test("what the date inputs get back, rangeFor reads as the same day", () => {
    assert.deepEqual(rangeFor("day", NOW, { day: localDate(NOW) }),
                     { since: Date.UTC(2025, 10, 21), until: Date.UTC(2025, 10, 22) });
    const from = localDateTime(NOW - HOUR);
    const to = localDateTime(NOW);
    assert.deepEqual(rangeFor("span", NOW, { from, to }),
                     { since: Date.UTC(2025, 10, 21, 13, 30), until: Date.UTC(2025, 10, 21, 14, 30) });
  });
});
