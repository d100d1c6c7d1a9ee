// static/maps/js/times.js (server times on the manage and connect pages) and
// static/maps/js/clock.js (the server's clock on the map): with a fixed Date.now and
// stand-ins for the few DOM objects they touch.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";

import { clockOffset, serverNow, syncClock } from "../../static/maps/js/clock.js";
import { renderTimes, startTimes } from "../../static/maps/js/times.js";

const NOW = Date.UTC(2025, 10, 21, 14, 30, 0);

// A <time datetime="..." data-format="..."> as far as renderTimes reads and writes it.
function timeElement(datetime, format) {
  return {
    textContent: "",
    title: "",
    dataset: { format },
    getAttribute(name) {
      return name === "datetime" ? datetime : null;
    },
  };
}

function rootOf(elements) {
  const selectors = [];
  return {
    selectors,
    querySelectorAll(selector) {
      selectors.push(selector);
      return elements;
    },
  };
}

beforeEach(() => {
  mock.method(Date, "now", () => NOW);
});

afterEach(() => {
  mock.restoreAll();
  delete globalThis.document;
  delete globalThis.window;
});

describe("times.js renderTimes", () => {
  test("ago: the wording of formatAgo against now; the title is the local time", () => {
    const elements = [
      timeElement("2025-11-21T14:29:58Z", "ago"),
      timeElement("2025-11-21T14:29:48Z", "ago"),
      timeElement("2025-11-21T14:27:00Z", "ago"),
      timeElement("2025-11-21T11:30:00+00:00", "ago"),
      timeElement("2025-11-18T14:30:00Z", "ago"),
    ];
    const root = rootOf(elements);
    renderTimes(root);
    assert.deepEqual(root.selectors, ["time[data-format]"]);
    assert.deepEqual(elements.map((e) => e.textContent),
                     ["just now", "12 s ago", "3 min ago", "3 h ago", "3 d ago"]);
    assert.match(elements[2].title, /Nov 21, 2025/);
    assert.match(elements[2].title, /2:27:00/);
  });

  test("local: the local date and time as text and title", () => {
    const element = timeElement("2025-11-20T09:07:05Z", "local");
    renderTimes(rootOf([element]));
    assert.match(element.textContent, /2025/);
    assert.match(element.textContent, /\b0?9:07:05\b/);
    assert.equal(element.title, element.textContent);
  });

  test("local, today: the time alone as text, the date in the title", () => {
    const element = timeElement("2025-11-21T09:07:05Z", "local");
    renderTimes(rootOf([element]));
    assert.doesNotMatch(element.textContent, /2025/);
    assert.match(element.textContent, /\b0?9:07:05\b/);
    assert.match(element.title, /Nov 21, 2025/);
  });

  test("in: a coming moment in words, its date in the title", () => {
    const element = timeElement("2025-11-24T14:30:00Z", "in");
    renderTimes(rootOf([element]));
    assert.equal(element.textContent, "in 3 days");
    assert.match(element.title, /Nov 24, 2025/);
  });

  test("an offset in the ISO time is honoured", () => {
    const element = timeElement("2025-11-21T16:29:00+02:00", "ago");
    renderTimes(rootOf([element]));
    assert.equal(element.textContent, "1 min ago");
  });

  test("an unreadable datetime is left alone", () => {
    const element = timeElement("yesterday-ish", "ago");
    element.textContent = "as the server wrote it";
    renderTimes(rootOf([element]));
    assert.equal(element.textContent, "as the server wrote it");
    assert.equal(element.title, "");
  });

  test("startTimes corrects this device's clock by the page's server time", () => {
    const intervals = [];
    globalThis.document = {
      body: { dataset: { serverNow: String(NOW + 5 * 60000) } },
      querySelectorAll: () => [],
    };
    globalThis.window = {
      setInterval(handler, ms) {
        intervals.push([handler, ms]);
        return 1;
      },
    };
    startTimes();
    assert.equal(intervals.length, 1);
    assert.equal(intervals[0][0], renderTimes);
    assert.equal(intervals[0][1], 5000);
    // The device's clock is 5 minutes behind the server's: a time 1 minute ago by the
    // device is 6 minutes ago.
    const element = timeElement("2025-11-21T14:29:00Z", "ago");
    renderTimes(rootOf([element]));
    assert.equal(element.textContent, "6 min ago");
  });
});

describe("clock.js", () => {
  test("before any sync the server's clock is this device's", () => {
    assert.equal(clockOffset(), 0);
    assert.equal(serverNow(), NOW);
  });

  test("a snapshot's or pong's now sets the offset", () => {
    syncClock(NOW + 2500);
    assert.equal(clockOffset(), 2500);
    assert.equal(serverNow(), NOW + 2500);
    syncClock(NOW - 60000);
    assert.equal(clockOffset(), -60000);
    assert.equal(serverNow(), NOW - 60000);
  });

  test("a missing or bad now keeps the last offset", () => {
    syncClock(NOW + 1000);
    for (const value of [undefined, null, NaN, "1763700000000"]) syncClock(value);
    assert.equal(clockOffset(), 1000);
  });
});
