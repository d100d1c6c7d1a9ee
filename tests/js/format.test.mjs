// static/maps/js/format.js: the wording of times, distances, speed, heading, battery.
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import {
  LOW_BATTERY,
  distanceMeters,
  formatAgo,
  formatBattery,
  formatClock,
  formatDistance,
  formatHeading,
  formatIn,
  formatLeft,
  formatPower,
  formatSpeed,
  pageLocale,
  t,
  tf,
} from "../../static/maps/js/format.js";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

// Strings of locale/zh_Hans/LC_MESSAGES/djangojs.po, as Django's catalog gives them.
const ZH = {
  "just now": "刚刚",
  "%s s ago": "%s 秒前",
  "%s min ago": "%s 分钟前",
  "%s min left": "还剩 %s 分钟",
  "battery %s%": "电量 %s%",
  "charging": "充电中",
  "Following %(name)s": "正在跟随 %(name)s",
};

function withCatalog(catalog) {
  const calls = [];
  globalThis.window = {
    gettext(text) {
      calls.push(text);
      return catalog[text] ?? text;
    },
  };
  return calls;
}

afterEach(() => {
  delete globalThis.window;
});

describe("t and tf", () => {
  test("without window (node, or a page with no catalog) the text stays English", () => {
    assert.equal(typeof globalThis.window, "undefined");
    assert.equal(t("just now"), "just now");
    assert.equal(tf("Following %(name)s", { name: "Ana" }), "Following Ana");
  });

  test("a window without gettext leaves the text as it is", () => {
    globalThis.window = {};
    assert.equal(t("charging"), "charging");
  });

  test("with window.gettext the catalog's translation is used", () => {
    const calls = withCatalog(ZH);
    assert.equal(t("charging"), "充电中");
    assert.equal(t("not in the catalog"), "not in the catalog");
    assert.deepEqual(calls, ["charging", "not in the catalog"]);
  });

  test("tf fills every named value, after translating", () => {
    withCatalog(ZH);
    assert.equal(tf("Following %(name)s", { name: "Ana" }), "正在跟随 Ana");
    assert.equal(tf("%(a)s and %(b)s and %(a)s", { a: 1, b: "two" }), "1 and two and 1");
    assert.equal(tf("%(missing)s!", {}), "undefined!");
  });

  test("the formatters go through the catalog too", () => {
    withCatalog(ZH);
    assert.equal(formatAgo(0), "刚刚");
    assert.equal(formatAgo(12 * SECOND), "12 秒前");
    assert.equal(formatAgo(3 * MINUTE), "3 分钟前");
    assert.equal(formatLeft(10 * MINUTE, 0), "还剩 10 分钟");
    assert.equal(formatBattery(62), "电量 62%");
    assert.equal(formatPower(62, true), "电量 62% · ⚡ 充电中");
    assert.equal(formatPower(18, true, { labelled: false }), "18% · ⚡ 充电中");
  });
});

describe("formatAgo", () => {
  const cases = [
    [0, "just now"],
    [4999, "just now"],
    [5 * SECOND, "5 s ago"],
    [12 * SECOND + 900, "12 s ago"],
    [59 * SECOND + 999, "59 s ago"],
    [MINUTE, "1 min ago"],
    [2 * MINUTE + 59 * SECOND, "2 min ago"],
    [HOUR - 1, "59 min ago"],
    [HOUR, "1 h ago"],
    [47 * HOUR + 59 * MINUTE, "47 h ago"],
    [48 * HOUR, "2 d ago"],
    [10 * 24 * HOUR, "10 d ago"],
  ];
  for (const [ms, text] of cases) {
    test(`${ms} ms -> ${text}`, () => assert.equal(formatAgo(ms), text));
  }

  test("a moment in the future (a clock ahead) is just now", () => {
    assert.equal(formatAgo(-30 * SECOND), "just now");
  });
});

describe("distanceMeters", () => {
  test("the same point is 0 m away", () => {
    assert.equal(distanceMeters({ lat: 46.05, lon: 14.5 }, { lat: 46.05, lon: 14.5 }), 0);
  });

  test("one degree along a meridian and along the equator: 111,195 m", () => {
    const oneDegree = (2 * Math.PI * 6371008.8) / 360;
    assert.ok(Math.abs(oneDegree - 111195.08) < 0.01);
    const north = distanceMeters({ lat: 0, lon: 0 }, { lat: 1, lon: 0 });
    const east = distanceMeters({ lat: 0, lon: 0 }, { lat: 0, lon: 1 });
    assert.ok(Math.abs(north - oneDegree) < 1e-6, String(north));
    assert.ok(Math.abs(east - oneDegree) < 1e-6, String(east));
  });

  test("a degree of longitude shrinks with the cosine of the latitude", () => {
    const atSixty = distanceMeters({ lat: 60, lon: 0 }, { lat: 60, lon: 1 });
    assert.ok(Math.abs(atSixty - 55597.5) < 1, String(atSixty));
  });

  test("antipodes are half the circumference apart", () => {
    const half = distanceMeters({ lat: 0, lon: 0 }, { lat: 0, lon: 180 });
    assert.ok(Math.abs(half - Math.PI * 6371008.8) < 1e-3, String(half));
  });

  test("Ljubljana to Zagreb is about 117 km, either way", () => {
    const ljubljana = { lat: 46.0569, lon: 14.5058 };
    const zagreb = { lat: 45.815, lon: 15.9819 };
    const there = distanceMeters(ljubljana, zagreb);
    assert.ok(there > 116000 && there < 118000, String(there));
    assert.equal(distanceMeters(zagreb, ljubljana), there);
  });
});

describe("formatDistance", () => {
  const cases = [
    [0, "0 m"],
    [12.4, "12 m"],
    [999.4, "999 m"],
    [1000, "1.0 km"],
    [1234, "1.2 km"],
    [9949, "9.9 km"],
    [10000, "10 km"],
    [12499, "12 km"],
    [12500, "13 km"],
    [117000, "117 km"],
  ];
  for (const [meters, text] of cases) {
    test(`${meters} m -> ${text}`, () => assert.equal(formatDistance(meters), text));
  }
});

describe("formatLeft", () => {
  const now = Date.UTC(2025, 10, 21, 14, 0);
  test("an open-ended share (null, undefined, Infinity) says nothing", () => {
    assert.equal(formatLeft(null, now), "");
    assert.equal(formatLeft(undefined, now), "");
    assert.equal(formatLeft(Infinity, now), "");
  });

  test("minutes round up, an hour and more reads in hours", () => {
    assert.equal(formatLeft(now + 11 * MINUTE + 30 * SECOND, now), "12 min left");
    assert.equal(formatLeft(now + 1, now), "1 min left");
    assert.equal(formatLeft(now + 59 * MINUTE, now), "59 min left");
    assert.equal(formatLeft(now + 60 * MINUTE, now), "1 h left");
    assert.equal(formatLeft(now + 2 * HOUR, now), "2 h left");
    assert.equal(formatLeft(now + 3 * HOUR + 5 * MINUTE, now), "3 h 5 min left");
    assert.equal(formatLeft(now + 3 * HOUR + 4 * MINUTE + 1, now), "3 h 5 min left");
  });

  test("a share already past its end has 0 min left", () => {
    assert.equal(formatLeft(now, now), "0 min left");
    assert.equal(formatLeft(now - 5 * MINUTE, now), "0 min left");
  });
});

describe("formatSpeed", () => {
  test("m/s read as km/h, one decimal below 10 km/h", () => {
    assert.equal(formatSpeed(0), "0.0 km/h");
    assert.equal(formatSpeed(1.3), "4.7 km/h");
    assert.equal(formatSpeed(2.7), "9.7 km/h");
    assert.equal(formatSpeed(2.78), "10 km/h");
    assert.equal(formatSpeed(10), "36 km/h");
    assert.equal(formatSpeed(33.4), "120 km/h");
  });

  test("unknown speed is empty", () => {
    for (const value of [undefined, null, NaN, Infinity, "3"]) assert.equal(formatSpeed(value), "");
  });
});

describe("formatHeading", () => {
  const cases = [
    [0, "0° (N)"],
    [22.4, "22° (N)"],
    [22.5, "23° (NE)"],
    [45, "45° (NE)"],
    [90, "90° (E)"],
    [135, "135° (SE)"],
    [180, "180° (S)"],
    [225, "225° (SW)"],
    [270, "270° (W)"],
    [315, "315° (NW)"],
    [337.6, "338° (N)"],
    [359.6, "0° (N)"],
  ];
  for (const [degrees, text] of cases) {
    test(`${degrees} -> ${text}`, () => assert.equal(formatHeading(degrees), text));
  }

  test("unknown heading is empty", () => {
    for (const value of [undefined, null, NaN]) assert.equal(formatHeading(value), "");
  });
});

describe("formatBattery and formatPower", () => {
  test("LOW_BATTERY is 20 %", () => assert.equal(LOW_BATTERY, 20));

  test("formatBattery rounds the percent; unknown is empty", () => {
    assert.equal(formatBattery(81), "battery 81%");
    assert.equal(formatBattery(61.5), "battery 62%");
    assert.equal(formatBattery(0), "battery 0%");
    assert.equal(formatBattery(undefined), "");
    assert.equal(formatBattery(null), "");
  });

  test("formatPower joins the battery and the charger with ' · '", () => {
    assert.equal(formatPower(62, true), "battery 62% · ⚡ charging");
    assert.equal(formatPower(62, false), "battery 62% · not charging");
    assert.equal(formatPower(62, undefined), "battery 62%");
    assert.equal(formatPower(undefined, true), "⚡ charging");
  });

  test("unlabelled, the word battery is left out (the card's row says it)", () => {
    assert.equal(formatPower(18.4, false, { labelled: false }), "18% · not charging");
    assert.equal(formatPower(18, undefined, { labelled: false }), "18%");
    assert.equal(formatPower(undefined, true, { labelled: false }), "⚡ charging");
    assert.equal(formatPower(undefined, false), "not charging");
    assert.equal(formatPower(undefined, undefined), "");
    assert.equal(formatPower(null, null), "");
  });

  test("only a real boolean says charging or not", () => {
    assert.equal(formatPower(50, 1), "battery 50%");
    assert.equal(formatPower(50, "false"), "battery 50%");
  });
});

describe("formatClock", () => {
  test("the local (here UTC) date and time with seconds", () => {
    assert.equal(process.env.TZ, "UTC", "run with TZ=UTC (make test-js)");
    const text = formatClock(Date.UTC(2025, 10, 21, 9, 7, 5));
    assert.match(text, /2025/);
    assert.match(text, /21/);
    assert.match(text, /\b0?9:07:05\b/);
  });

  test("a moment just before midnight UTC is still that day", () => {
    const text = formatClock(Date.UTC(2025, 10, 21, 23, 59, 58));
    assert.match(text, /21/);
    assert.doesNotMatch(text, /22/);
  });
});

describe("pageLocale and formatClock", () => {
  afterEach(() => {
    delete globalThis.document;
  });

  test("dates follow the page's language, not the browser's (issue 25 item 22)", () => {
    globalThis.document = { documentElement: { lang: "zh-hans" } };
    assert.equal(pageLocale(), "zh-hans");
    assert.match(formatClock(Date.UTC(2025, 0, 5, 14, 2, 3)), /2025年1月5日/);
    globalThis.document = { documentElement: { lang: "en-us" } };
    assert.match(formatClock(Date.UTC(2025, 0, 5, 14, 2, 3)), /Jan 5, 2025/);
  });

  test("a browser that speaks the page's language keeps its own format", () => {
    Object.defineProperty(globalThis, "navigator", {
      value: { language: "en-GB" }, configurable: true,
    });
    try {
      globalThis.document = { documentElement: { lang: "en" } };
      assert.equal(pageLocale(), undefined);
      globalThis.document = { documentElement: { lang: "zh-hans" } };
      assert.equal(pageLocale(), "zh-hans");
    } finally {
      delete globalThis.navigator;
    }
  });

  test("without a page, or a language Intl does not know, the browser's own", () => {
    assert.equal(pageLocale(), undefined);
    globalThis.document = { documentElement: { lang: "" } };
    assert.equal(pageLocale(), undefined);
    globalThis.document = {};
    assert.equal(pageLocale(), undefined);
  });
});

describe("formatIn and today's formatClock (issue 25 item 21)", () => {
  const NOW = Date.UTC(2025, 0, 5, 10, 0, 0);

  test("a future moment in words", () => {
    assert.equal(formatIn(NOW + 4 * 60000 + 1, NOW), "in 5 min");
    assert.equal(formatIn(NOW + 3 * 3600000, NOW), "in 3 h");
    assert.equal(formatIn(NOW + 47 * 3600000, NOW), "in 47 h");
    assert.equal(formatIn(NOW + 3 * 86400000, NOW), "in 3 days");
    assert.equal(formatIn(NOW - 1, NOW), "now");
  });

  test("today: the time alone; another day: the date too", () => {
    const today = formatClock(Date.UTC(2025, 0, 5, 8, 2, 3), NOW);
    assert.doesNotMatch(today, /2025/);
    assert.match(today, /8:02:03|08:02:03/);
    assert.match(formatClock(Date.UTC(2025, 0, 4, 8, 2, 3), NOW), /2025/);
  });
});
