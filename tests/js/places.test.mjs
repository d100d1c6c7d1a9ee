// static/maps/js/places.js: alert rules, the feed's wording, and how the `places` and
// `place_event` frames are taken (docs/protocol.md), with stand-ins for Leaflet and
// the DOM where the class draws.
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";

import { Places, describeEvent, placeAt, ruleMatches, shouldAlert } from "../../static/maps/js/places.js";

const AT_0907 = Date.UTC(2025, 10, 21, 9, 7, 30);
const ENTER = { type: "place_event", member: 12, place: 3, kind: "enter", ts: AT_0907 };
const LEAVE = { type: "place_event", member: 13, place: 4, kind: "leave", ts: AT_0907 };

afterEach(() => {
  delete globalThis.window;
  delete globalThis.document;
  delete globalThis.L;
  delete globalThis.Notification;
});

describe("ruleMatches", () => {
  test("null is any member, any place", () => {
    assert.equal(ruleMatches({ member: null, place: null }, ENTER), true);
    assert.equal(ruleMatches({ member: 12, place: null }, ENTER), true);
    assert.equal(ruleMatches({ member: null, place: 3 }, ENTER), true);
    assert.equal(ruleMatches({ member: 12, place: 3 }, ENTER), true);
  });

  test("another member or place does not match", () => {
    assert.equal(ruleMatches({ member: 13, place: null }, ENTER), false);
    assert.equal(ruleMatches({ member: null, place: 4 }, ENTER), false);
    assert.equal(ruleMatches({ member: 12, place: 4 }, ENTER), false);
    assert.equal(ruleMatches({ member: 13, place: 3 }, ENTER), false);
  });

  test("ids are compared as numbers, strictly", () => {
    assert.equal(ruleMatches({ member: "12", place: null }, ENTER), false);
  });
});

describe("shouldAlert", () => {
  test("someone else's event that a rule covers alerts", () => {
    assert.equal(shouldAlert(ENTER, [{ member: 99, place: null }, { member: null, place: 3 }], 13),
                 true);
  });

  test("my own arrivals never alert me", () => {
    assert.equal(shouldAlert(ENTER, [{ member: null, place: null }], 12), false);
  });

  test("no rules, or none that covers it: no alert", () => {
    assert.equal(shouldAlert(ENTER, [], 13), false);
    assert.equal(shouldAlert(ENTER, [{ member: 13, place: null }], null), false);
  });

  test("a watch page or a viewer (me null) is alerted too", () => {
    assert.equal(shouldAlert(LEAVE, [{ member: 13, place: 4 }], null), true);
  });
});

describe("describeEvent", () => {
  test("enter and leave, with the local time (UTC here)", () => {
    assert.equal(process.env.TZ, "UTC", "run with TZ=UTC (make test-js)");
    const arrived = describeEvent(ENTER, "Ana", "School");
    assert.match(arrived, /^Ana arrived at School · 09:07( AM)?$/);
    const left = describeEvent(LEAVE, "Bo", "Home");
    assert.match(left, /^Bo left Home · 09:07( AM)?$/);
  });

  test("in Chinese through the catalog", () => {
    const zh = {
      "%(member)s arrived at %(place)s · %(time)s": "%(member)s 到达了 %(place)s · %(time)s",
    };
    globalThis.window = { gettext: (text) => zh[text] ?? text };
    assert.match(describeEvent(ENTER, "安娜", "学校"), /^安娜 到达了 学校 · 09:07/);
  });
});

// -- the frames, on a Places without its constructor (which reads the page) ---------

function fakeCircle(latlng, options) {
  return {
    latlng,
    radius: options.radius,
    options,
    removed: false,
    addTo() {
      return this;
    },
    setLatLng(value) {
      this.latlng = value;
    },
    setRadius(value) {
      this.radius = value;
    },
    bindTooltip(content, options) {
      this.tooltip = content;
      this.tooltipOptions = options;
    },
    setTooltipContent(content) {
      this.tooltip = content;
    },
    remove() {
      this.removed = true;
    },
  };
}

function placesOf({ me = 13, rules = [], names = { 12: "Ana", 13: "Bo" }, feed = null } = {}) {
  const places = Object.create(Places.prototype);
  Object.assign(places, {
    me,
    rules,
    places: new Map(),
    circles: new Map(),
    layer: {},
    memberName: (id) => names[id] ?? "Someone",
    el: { feed, list: null, alertMember: null, alertList: null },
  });
  return places;
}

function feedList() {
  const children = [];
  return {
    children,
    get lastChild() {
      return children.at(-1);
    },
    prepend(item) {
      item.remove = () => children.splice(children.indexOf(item), 1);
      children.unshift(item);
    },
  };
}

describe("the places frame", () => {
  test("draws a circle per place, then replaces the list whole", () => {
    globalThis.L = { circle: fakeCircle };
    globalThis.document = { createElement: (tag) => ({ tag, textContent: "" }) };
    const places = placesOf();
    places.setPlaces([
      { id: 3, name: "School", lat: 46.0512, lon: 14.5068, radius: 150, created_by: 12 },
      { id: 4, name: "Home", lat: 46.06, lon: 14.51, radius: 80, created_by: null },
    ]);
    assert.deepEqual([...places.places.keys()], [3, 4]);
    const school = places.circles.get(3);
    assert.deepEqual(school.latlng, [46.0512, 14.5068]);
    assert.equal(school.radius, 150);
    const home = places.circles.get(4);
    // Each circle carries its name, as a text element, shown all the time.
    assert.deepEqual(school.tooltip, { tag: "span", textContent: "School" });
    assert.equal(school.tooltipOptions.permanent, true);

    places.setPlaces([{ id: 3, name: "Old school", lat: 46.05, lon: 14.5, radius: 200,
                        created_by: 12 }]);
    assert.deepEqual([...places.places.keys()], [3]);
    assert.equal(places.places.get(3).name, "Old school");
    assert.equal(places.circles.get(3), school, "a changed place moves its circle");
    assert.deepEqual(school.latlng, [46.05, 14.5]);
    assert.equal(school.radius, 200);
    assert.equal(school.tooltip.textContent, "Old school");
    assert.equal(home.removed, true);
    assert.equal(places.circles.has(4), false);

    places.setPlaces([]);
    assert.equal(places.places.size, 0);
    assert.equal(school.removed, true);
  });
});

describe("the place_event frame", () => {
  function withDocument() {
    globalThis.document = { createElement: (tag) => ({ tag, textContent: "", className: "" }) };
  }

  test("a line at the top of the feed; an alert when a rule covers it", () => {
    withDocument();
    const feed = feedList();
    const places = placesOf({ feed, rules: [{ member: 12, place: null }] });
    places.places.set(3, { id: 3, name: "School" });
    places.addEvent(ENTER);
    places.addEvent({ ...LEAVE, place: 99 });
    assert.equal(feed.children.length, 2);
    assert.match(feed.children[0].textContent, /^Bo left a place · 09:07/);
    assert.equal(feed.children[0].className, "");
    assert.match(feed.children[1].textContent, /^Ana arrived at School · 09:07/);
    assert.equal(feed.children[1].className, "alert");
  });

  test("the feed keeps the latest 50", () => {
    withDocument();
    const feed = feedList();
    const places = placesOf({ feed });
    for (let i = 0; i < 60; i += 1) places.addEvent({ ...ENTER, ts: AT_0907 + i * 60000 });
    assert.equal(feed.children.length, 50);
    assert.match(feed.children[0].textContent, /10:06/);
    assert.match(feed.children[49].textContent, /09:17/);
  });

  test("an alert with the permission given is a system notification", () => {
    const shown = [];
    globalThis.Notification = class {
      static permission = "granted";
      constructor(title, options) {
        shown.push([title, options]);
      }
    };
    const places = placesOf({ rules: [{ member: null, place: null }] });
    places.places.set(3, { id: 3, name: "School" });
    places.addEvent(ENTER);
    places.addEvent({ ...ENTER, member: 13 }); // mine: no alert
    assert.equal(shown.length, 1);
    assert.equal(shown[0][0], "geoshare");
    assert.match(shown[0][1].body, /^Ana arrived at School/);
    assert.equal(shown[0][1].tag, `place-12-${AT_0907}`);
  });

  test("no notification without the permission", () => {
    const shown = [];
    globalThis.Notification = class {
      static permission = "default";
      constructor() {
        shown.push(1);
      }
    };
    placesOf({ rules: [{ member: null, place: null }] }).addEvent(ENTER);
    assert.equal(shown.length, 0);
  });
});

describe("placeAt (the member list's 'at School')", () => {
  const school = { id: 1, name: "School", lat: 45.77218, lon: 14.35766, radius: 100 };
  const park = { id: 2, name: "Park", lat: 45.7725, lon: 14.3580, radius: 250 };

  test("inside the circle with a good fix: the place", () => {
    assert.equal(placeAt({ lat: 45.77218, lon: 14.35766, accuracy: 10 }, [school])?.name,
      "School");
  });

  test("the enter rule: accuracy at most max(radius, 50 m); unknown counts as 0", () => {
    const centre = { lat: 45.77218, lon: 14.35766 };
    assert.equal(placeAt({ ...centre, accuracy: 100 }, [school])?.name, "School");
    assert.equal(placeAt({ ...centre, accuracy: 101 }, [school]), null);
    assert.equal(placeAt({ ...centre }, [school])?.name, "School");
    const small = { ...school, radius: 20 };
    assert.equal(placeAt({ ...centre, accuracy: 50 }, [small])?.name, "School");
    assert.equal(placeAt({ ...centre, accuracy: 51 }, [small]), null);
  });

  test("outside every circle, or no position: null", () => {
    assert.equal(placeAt({ lat: 45.78, lon: 14.37, accuracy: 5 }, [school, park]), null);
    assert.equal(placeAt(undefined, [school]), null);
  });

  test("inside two: the nearer centre", () => {
    assert.equal(placeAt({ lat: 45.7725, lon: 14.3580, accuracy: 5 }, [school, park])?.name,
      "Park");
  });
});
