// static/maps/js/share.js: the position frame a browser fix becomes (docs/protocol.md,
// "position"), and what the sharer sends after the server's answers.
import assert from "node:assert/strict";
import { afterEach, describe, mock, test } from "node:test";

import { LocationSharer, frameFromPosition } from "../../static/maps/js/share.js";

const NOW = 1763700000000;

// A GeolocationPosition as browsers give it: null for what they do not know.
function fix(coords, timestamp = NOW - 1500) {
  return {
    coords: { accuracy: null, altitude: null, speed: null, heading: null, ...coords },
    timestamp,
  };
}

afterEach(() => mock.restoreAll());

describe("frameFromPosition", () => {
  test("every known field, ts the fix's time", () => {
    const frame = frameFromPosition(fix({ latitude: 46.05, longitude: 14.5, accuracy: 8,
                                          altitude: 295, speed: 1.3, heading: 270 }));
    assert.deepEqual(frame, { type: "position", lat: 46.05, lon: 14.5, accuracy: 8,
                              altitude: 295, speed: 1.3, heading: 270, ts: NOW - 1500 });
  });

  test("null fields are left out, not sent as null", () => {
    assert.deepEqual(frameFromPosition(fix({ latitude: -33.9, longitude: 151.2 })),
                     { type: "position", lat: -33.9, lon: 151.2, ts: NOW - 1500 });
  });

  test("NaN heading (standing still) and infinities are left out", () => {
    const frame = frameFromPosition(fix({ latitude: 1, longitude: 2, heading: NaN,
                                          speed: Infinity, altitude: -Infinity, accuracy: 5 }));
    assert.deepEqual(frame, { type: "position", lat: 1, lon: 2, accuracy: 5, ts: NOW - 1500 });
  });

  test("a value that is not a number is left out", () => {
    const frame = frameFromPosition(fix({ latitude: 1, longitude: 2, accuracy: "8", speed: true }));
    assert.equal("accuracy" in frame, false);
    assert.equal("speed" in frame, false);
  });

  test("out of the protocol's ranges: negative accuracy or speed, heading past 360", () => {
    const frame = frameFromPosition(fix({ latitude: 1, longitude: 2, accuracy: -1, speed: -0.5,
                                          heading: 361, altitude: -20 }));
    assert.deepEqual(frame, { type: "position", lat: 1, lon: 2, altitude: -20, ts: NOW - 1500 });
    assert.equal(frameFromPosition(fix({ latitude: 1, longitude: 2, heading: -1 })).heading,
                 undefined);
  });

  test("the edges of the ranges are kept", () => {
    const frame = frameFromPosition(fix({ latitude: 90, longitude: -180, accuracy: 0, speed: 0,
                                          heading: 360 }));
    assert.deepEqual(frame, { type: "position", lat: 90, lon: -180, accuracy: 0, speed: 0,
                              heading: 360, ts: NOW - 1500 });
    assert.equal(frameFromPosition(fix({ latitude: 0, longitude: 0, heading: 0 })).heading, 0);
  });

  test("ts is an integer: a fractional timestamp is rounded", () => {
    assert.equal(frameFromPosition(fix({ latitude: 1, longitude: 2 }, NOW + 0.6)).ts, NOW + 1);
  });

  test("no timestamp: now", () => {
    mock.method(Date, "now", () => NOW);
    assert.equal(frameFromPosition({ coords: { latitude: 1, longitude: 2 } }).ts, NOW);
    assert.equal(frameFromPosition(fix({ latitude: 1, longitude: 2 }, 0)).ts, NOW);
  });

  test("withTs false: no ts (the server refused this device's clock)", () => {
    const frame = frameFromPosition(fix({ latitude: 1, longitude: 2 }), { withTs: false });
    assert.deepEqual(frame, { type: "position", lat: 1, lon: 2 });
  });
});

describe("LocationSharer sending", () => {
  function sharer({ accept = true } = {}) {
    const sent = [];
    const changes = [];
    const s = new LocationSharer({
      send: (frame) => {
        sent.push(frame);
        return accept;
      },
      onChange: (state) => changes.push(state),
      onError: () => {},
      keepAliveMs: 40000,
    });
    return { s, sent, changes };
  }

  test("nothing to send before a fix", () => {
    const { s, sent } = sharer();
    s.sendFix();
    s.resend();
    assert.deepEqual(sent, []);
    assert.equal(s.myPosition(), null);
  });

  test("a fix is sent; the first accepted send turns the state on", () => {
    mock.method(Date, "now", () => NOW);
    const { s, sent, changes } = sharer();
    s.state = "locating";
    s.lastFix = fix({ latitude: 46.05, longitude: 14.5, accuracy: 8 });
    s.sendFix();
    s.sendFix();
    assert.deepEqual(sent[0], { type: "position", lat: 46.05, lon: 14.5, accuracy: 8,
                                ts: NOW - 1500 });
    assert.equal(sent.length, 2);
    assert.deepEqual(changes, ["on"]);
    assert.equal(s.lastSentAt, NOW);
    assert.deepEqual(s.myPosition(), { lat: 46.05, lon: 14.5 });
  });

  test("while not connected (send false) the state stays as it was", () => {
    const { s, changes } = sharer({ accept: false });
    s.state = "locating";
    s.lastFix = fix({ latitude: 1, longitude: 2 });
    s.sendFix();
    assert.equal(s.state, "locating");
    assert.deepEqual(changes, []);
    assert.equal(s.lastSentAt, 0);
  });

  test("a resend after a reconnect brings an old fix's ts up to now", () => {
    mock.method(Date, "now", () => NOW);
    const { s, sent } = sharer();
    s.state = "on";
    s.lastFix = fix({ latitude: 1, longitude: 2 }, NOW - 60000);
    s.resend();
    assert.equal(sent[0].ts, NOW);
  });

  test("after the server refused the device time (error invalid ts): no ts", () => {
    mock.method(Date, "now", () => NOW);
    const { s, sent } = sharer();
    s.state = "on";
    s.lastFix = fix({ latitude: 1, longitude: 2 }, NOW + 3 * 3600000);
    s.dropDeviceTime();
    s.resend();
    assert.deepEqual(sent, [{ type: "position", lat: 1, lon: 2 }]);
  });

  test("setKeepAlive takes only a positive finite number", () => {
    const { s } = sharer();
    s.setKeepAlive(0);
    s.setKeepAlive(NaN);
    s.setKeepAlive(-5);
    assert.equal(s.keepAliveMs, 40000);
    s.setKeepAlive(20000);
    assert.equal(s.keepAliveMs, 20000);
  });
});
