// static/maps/js/socket.js: the reconnect backoff, and how RoomSocket takes the
// server's frames and close codes (docs/protocol.md), with a stand-in WebSocket.
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, mock, test } from "node:test";

import { BACKOFF_MAX_MS, RoomSocket, backoffDelay } from "../../static/maps/js/socket.js";

const fixed = (value) => () => value;

describe("backoffDelay", () => {
  test("doubles from 500 ms while visible, up to 10 s (no jitter: random 0.5)", () => {
    const delays = [0, 1, 2, 3, 4, 5, 6, 40].map((a) => backoffDelay(a, { random: fixed(0.5) }));
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
    assert.equal(BACKOFF_MAX_MS, 10000);
  });

  test("a hidden tab goes on up to 60 s", () => {
    const delays = [0, 4, 5, 6, 7, 20, 1000].map(
      (a) => backoffDelay(a, { hidden: true, random: fixed(0.5) }));
    assert.deepEqual(delays, [500, 8000, 16000, 32000, 60000, 60000, 60000]);
  });

  test("jitter: from 0.75x to 1.25x the base, never past the maximum", () => {
    assert.equal(backoffDelay(0, { random: fixed(0) }), 375);
    assert.equal(backoffDelay(0, { random: fixed(0.999) }), 625);
    assert.equal(backoffDelay(2, { random: fixed(0.25) }), 1750);
    assert.equal(backoffDelay(3, { random: fixed(0.999) }), 4998);
    assert.equal(backoffDelay(4, { random: fixed(0.999) }), 9996);
    assert.equal(backoffDelay(5, { random: fixed(0) }), 7500);
    assert.equal(backoffDelay(5, { random: fixed(0.999) }), 10000);
    assert.equal(backoffDelay(7, { hidden: true, random: fixed(0) }), 45000);
    assert.equal(backoffDelay(7, { hidden: true, random: fixed(0.999) }), 60000);
  });

  test("every attempt stays within bounds, whatever the random number", () => {
    for (let attempt = 0; attempt < 50; attempt += 1) {
      for (const r of [0, 0.1, 0.5, 0.9, 0.999999]) {
        const visible = backoffDelay(attempt, { random: fixed(r) });
        const hidden = backoffDelay(attempt, { hidden: true, random: fixed(r) });
        assert.ok(Number.isInteger(visible) && visible >= 375 && visible <= 10000, String(visible));
        assert.ok(Number.isInteger(hidden) && hidden >= 375 && hidden <= 60000, String(hidden));
      }
    }
  });

  test("the default random is Math.random", () => {
    mock.method(Math, "random", () => 0);
    try {
      assert.equal(backoffDelay(1), 750);
    } finally {
      mock.restoreAll();
    }
  });
});

// -- RoomSocket with stand-ins for window, document and WebSocket ---------------------

class FakeWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;
  static opened = [];

  constructor(url) {
    this.url = url;
    this.readyState = FakeWebSocket.CONNECTING;
    this.listeners = new Map();
    this.sent = [];
    this.closedWith = null;
    FakeWebSocket.opened.push(this);
  }

  addEventListener(type, handler) {
    this.listeners.set(type, handler);
  }

  emit(type, event = {}) {
    if (type === "open") this.readyState = FakeWebSocket.OPEN;
    if (type === "close") this.readyState = FakeWebSocket.CLOSED;
    this.listeners.get(type)(event);
  }

  send(data) {
    this.sent.push(data);
  }

  close(code, reason) {
    this.closedWith = [code, reason];
  }
}

let timers;
let clock;

beforeEach(() => {
  FakeWebSocket.opened = [];
  timers = { timeouts: new Map(), intervals: new Map(), next: 1, cleared: [] };
  clock = 1_763_700_000_000;
  mock.method(Date, "now", () => clock);
  globalThis.WebSocket = FakeWebSocket;
  globalThis.document = { hidden: false, listeners: {}, addEventListener(type, handler) {
    this.listeners[type] = handler;
  } };
  globalThis.window = {
    location: { href: "https://geo.example/r/q3VbTn8dYw0aL1kP/", protocol: "https:" },
    listeners: {},
    addEventListener(type, handler) {
      this.listeners[type] = handler;
    },
    setTimeout(handler, ms) {
      const id = timers.next++;
      timers.timeouts.set(id, [handler, ms]);
      return id;
    },
    clearTimeout(id) {
      timers.cleared.push(id);
      timers.timeouts.delete(id);
    },
    setInterval(handler, ms) {
      const id = timers.next++;
      timers.intervals.set(id, [handler, ms]);
      return id;
    },
    clearInterval(id) {
      timers.intervals.delete(id);
    },
  };
});

afterEach(() => {
  mock.restoreAll();
  delete globalThis.WebSocket;
  delete globalThis.document;
  delete globalThis.window;
});

function started(options = {}) {
  const frames = [];
  const states = [];
  const socket = new RoomSocket("/ws/rooms/q3VbTn8dYw0aL1kP/", {
    onFrame: (frame) => frames.push(frame),
    onState: (state, detail) => states.push([state, detail]),
    ...options,
  });
  socket.start();
  return { socket, frames, states, ws: FakeWebSocket.opened.at(-1) };
}

const SNAPSHOT = {
  type: "snapshot", you: 12, now: 1763700000123,
  room: { id: "q3VbTn8dYw0aL1kP", name: "Ski trip", tick_ms: 100, stale_after_ms: 120000,
          trail_ms: 600000 },
  members: [], positions: [],
};

function message(ws, frame) {
  ws.emit("message", { data: typeof frame === "string" ? frame : JSON.stringify(frame) });
}

describe("RoomSocket", () => {
  test("the page's address becomes a wss: URL (ws: on http:)", () => {
    const { socket, states } = started();
    assert.equal(socket.url, "wss://geo.example/ws/rooms/q3VbTn8dYw0aL1kP/");
    assert.equal(FakeWebSocket.opened.length, 1);
    assert.equal(socket.state, "connecting");
    assert.deepEqual(states, []);
    window.location = { href: "http://127.0.0.1:8000/r/x/", protocol: "http:" };
    const plain = new RoomSocket("/ws/rooms/x/?key=abc", { onFrame() {}, onState() {} });
    assert.equal(plain.url, "ws://127.0.0.1:8000/ws/rooms/x/?key=abc");
  });

  test("a snapshot says connected; every frame goes to onFrame as an object", () => {
    const { socket, frames, states, ws } = started();
    ws.emit("open");
    message(ws, SNAPSHOT);
    message(ws, { type: "positions", positions: [{ member: 12, lat: 46.05, lon: 14.5 }] });
    message(ws, { type: "place_event", member: 12, place: 3, kind: "enter", ts: 1 });
    assert.equal(socket.state, "connected");
    assert.deepEqual(states, [["connected", ""]]);
    assert.deepEqual(frames.map((f) => f.type), ["snapshot", "positions", "place_event"]);
    assert.deepEqual(frames[1].positions[0], { member: 12, lat: 46.05, lon: 14.5 });
  });

  test("a second snapshot (a resync) does not say connected again", () => {
    const { states, frames, ws } = started();
    message(ws, SNAPSHOT);
    message(ws, SNAPSHOT);
    assert.deepEqual(states, [["connected", ""]]);
    assert.equal(frames.length, 2);
  });

  test("a frame that is not JSON is dropped; the socket goes on", () => {
    const { frames, ws, socket } = started();
    message(ws, "{not json");
    message(ws, "");
    message(ws, { type: "pong", now: 5 });
    assert.deepEqual(frames, [{ type: "pong", now: 5 }]);
    assert.equal(socket.lastHeard, clock);
  });

  for (const [code, text] of [
    [4401, "You are not signed in to this room. Open your invite link again."],
    [4403, "You are no longer a member of this room."],
    [4404, "This room does not exist any more."],
  ]) {
    test(`close ${code} is final: closed, with its reason, no retry`, () => {
      const { socket, states, ws } = started();
      message(ws, SNAPSHOT);
      ws.emit("close", { code });
      assert.equal(socket.state, "closed");
      assert.deepEqual(states.at(-1), ["closed", text]);
      assert.equal(timers.timeouts.size, 0);
      assert.equal(FakeWebSocket.opened.length, 1);
    });
  }

  test("the watch page's own final codes replace the room's", () => {
    const ended = new Map([[4404, "This link has ended."]]);
    const { socket, states, ws } = started({ finalCloseCodes: ended });
    ws.emit("close", { code: 4404 });
    assert.deepEqual(states, [["closed", "This link has ended."]]);
    const again = FakeWebSocket.opened.length;
    const { ws: second } = started({ finalCloseCodes: ended });
    second.emit("close", { code: 4403 });
    assert.equal(socket.state, "closed");
    assert.equal(FakeWebSocket.opened.length, again + 1);
    assert.equal(timers.timeouts.size, 1, "4403 is not final on a watch page's map");
  });

  test("any other close (1006, 4429, 1011) reconnects after the backoff", () => {
    mock.method(Math, "random", () => 0.5);
    const { socket, states, ws } = started();
    message(ws, SNAPSHOT);
    ws.emit("close", { code: 1006 });
    assert.equal(socket.state, "reconnecting");
    assert.deepEqual(states.at(-1), ["reconnecting", ""]);
    assert.equal(socket.attempt, 1);
    assert.equal(socket.retryAt, clock + 500);
    const [[retry, ms]] = [...timers.timeouts.values()];
    assert.equal(ms, 500);
    retry();
    assert.equal(FakeWebSocket.opened.length, 2);
    const second = FakeWebSocket.opened[1];
    second.emit("close", { code: 4429 });
    assert.equal(socket.attempt, 2);
    assert.equal(socket.retryAt, clock + 1000);
    [...timers.timeouts.values()].at(-1)[0]();
    const third = FakeWebSocket.opened[2];
    message(third, SNAPSHOT);
    assert.equal(socket.state, "connected");
    assert.equal(socket.attempt, 0, "a snapshot resets the backoff");
    assert.deepEqual(states.map((s) => s[0]),
                     ["connected", "reconnecting", "reconnecting", "connected"]);
  });

  test("a hidden tab waits longer", () => {
    mock.method(Math, "random", () => 0.5);
    const { socket, ws } = started();
    socket.attempt = 7;
    document.hidden = true;
    ws.emit("close", { code: 1006 });
    assert.equal(socket.retryAt, clock + 60000);
  });

  test("back online: retry at once instead of waiting", () => {
    const { socket, ws } = started();
    ws.emit("close", { code: 1006 });
    const timer = socket.retryTimer;
    window.listeners.online();
    assert.deepEqual(timers.cleared, [timer]);
    assert.equal(FakeWebSocket.opened.length, 2);
    assert.equal(socket.retryTimer, 0);
  });

  test("shown again after a long hidden wait: retry now; a short wait is kept", () => {
    mock.method(Math, "random", () => 0.5);
    const { socket, ws } = started();
    socket.attempt = 7;
    document.hidden = true;
    ws.emit("close", { code: 1006 });
    document.hidden = false;
    clock += 30000; // 30 s still to wait: more than the visible maximum
    document.listeners.visibilitychange();
    assert.equal(FakeWebSocket.opened.length, 2);
    FakeWebSocket.opened[1].emit("close", { code: 1006 });
    document.listeners.visibilitychange();
    assert.equal(FakeWebSocket.opened.length, 2, "a wait under 10 s is not cut short");
  });

  test("a close from a socket already replaced is ignored", () => {
    const { socket, states, ws } = started();
    ws.emit("close", { code: 1006 });
    window.listeners.online();
    const current = FakeWebSocket.opened[1];
    ws.emit("close", { code: 4403 });
    assert.equal(socket.ws, current);
    assert.deepEqual(states.map((s) => s[0]), ["reconnecting"]);
  });

  test("send: a JSON frame while open, false otherwise", () => {
    const { socket, ws } = started();
    assert.equal(socket.send({ type: "stop" }), false);
    ws.emit("open");
    assert.equal(socket.send({ type: "share", until: null }), true);
    assert.deepEqual(ws.sent, ['{"type":"share","until":null}']);
    ws.emit("close", { code: 1006 });
    assert.equal(socket.send({ type: "stop" }), false);
  });

  test("pings every 20 s; 45 s of silence closes the socket", () => {
    const { ws } = started();
    ws.emit("open");
    const [[ping, every]] = [...timers.intervals.values()];
    assert.equal(every, 20000);
    clock += 20000;
    ping();
    assert.deepEqual(ws.sent, ['{"type":"ping"}']);
    message(ws, { type: "pong", now: clock });
    clock += 45000;
    ping();
    assert.equal(ws.closedWith, null, "45 s exactly is not silence yet");
    clock += 1;
    ping();
    assert.deepEqual(ws.closedWith, [1000, "silent"]);
    assert.equal(ws.sent.length, 2);
  });

  test("a closed socket stops pinging", () => {
    const { ws } = started();
    ws.emit("open");
    assert.equal(timers.intervals.size, 1);
    ws.emit("close", { code: 1006 });
    assert.equal(timers.intervals.size, 0);
  });
});
