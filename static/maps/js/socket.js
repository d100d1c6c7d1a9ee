// The room's WebSocket: connect, reconnect with backoff, report the state.
//
// States: "connecting" (first attempt), "connected" (snapshot received),
// "reconnecting" (lost; next attempt scheduled), "closed" (refused for good: 4401,
// 4403, 4404 are final, docs/protocol.md). A (re)connection always starts with a
// snapshot, so the page resyncs from it and never guesses what it missed.

const FINAL_CLOSE_CODES = new Map([
  [4401, "You are not signed in to this room. Open your invite link again."],
  [4403, "You are no longer a member of this room."],
  [4404, "This room does not exist any more."],
]);
const BACKOFF_FIRST_MS = 500;
// While the page is visible the wait never grows past this; a hidden tab waits longer
// (nobody is looking), and catches up as soon as it is shown again.
export const BACKOFF_MAX_MS = 10000;
const BACKOFF_HIDDEN_MAX_MS = 60000;

// The wait before reconnect attempt number `attempt` (0-based), jitter included.
export function backoffDelay(attempt, { hidden = false, random = Math.random } = {}) {
  const max = hidden ? BACKOFF_HIDDEN_MAX_MS : BACKOFF_MAX_MS;
  const base = Math.min(max, BACKOFF_FIRST_MS * 2 ** Math.min(attempt, 20));
  return Math.min(max, Math.round(base * (0.75 + random() * 0.5)));
}
// With nothing heard for this long the connection is presumed dead (the server
// answers pings at once, and sends WebSocket pings of its own).
const PING_EVERY_MS = 20000;
const SILENCE_LIMIT_MS = 45000;

export class RoomSocket {
  constructor(path, { onFrame, onState, finalCloseCodes = FINAL_CLOSE_CODES }) {
    const url = new URL(path, window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    this.url = url.href;
    this.onFrame = onFrame;
    this.onState = onState;
    this.finalCloseCodes = finalCloseCodes;
    this.ws = null;
    this.state = "connecting";
    this.attempt = 0;
    this.retryTimer = 0;
    this.retryAt = 0;
    this.pingTimer = 0;
    this.lastHeard = 0;
    this.handleOnline = this.handleOnline.bind(this);
    this.handleVisible = this.handleVisible.bind(this);
  }

  start() {
    window.addEventListener("online", this.handleOnline);
    document.addEventListener("visibilitychange", this.handleVisible);
    this.open();
  }

  setState(state, detail = "") {
    this.state = state;
    this.onState(state, detail);
  }

  open() {
    this.retryTimer = 0;
    const ws = new WebSocket(this.url);
    this.ws = ws;
    const socket = this;

    function handleMessage(event) {
      socket.lastHeard = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.type === "snapshot") {
        socket.attempt = 0;
        if (socket.state !== "connected") socket.setState("connected");
      }
      socket.onFrame(frame);
    }

    function handleOpen() {
      socket.lastHeard = Date.now();
      socket.startPinging();
    }

    function handleClose(event) {
      if (socket.ws !== ws) return;
      socket.ws = null;
      socket.stopPinging();
      const final = socket.finalCloseCodes.get(event.code);
      if (final !== undefined) {
        socket.setState("closed", final);
        return;
      }
      socket.scheduleRetry();
    }

    ws.addEventListener("message", handleMessage);
    ws.addEventListener("open", handleOpen);
    ws.addEventListener("close", handleClose);
  }

  scheduleRetry() {
    const delay = backoffDelay(this.attempt, { hidden: document.hidden });
    this.attempt += 1;
    this.retryAt = Date.now() + delay;
    this.retryTimer = window.setTimeout(this.open.bind(this), delay);
    this.setState("reconnecting");
  }

  // Back online (or asked by the user): try now instead of waiting out the backoff.
  retryNow() {
    if (this.state !== "reconnecting" || this.retryTimer === 0) return;
    window.clearTimeout(this.retryTimer);
    this.open();
  }

  handleOnline() {
    this.retryNow();
  }

  // Shown again after a long hidden wait: no more than the visible maximum from now.
  handleVisible() {
    if (!document.hidden && this.retryAt - Date.now() > BACKOFF_MAX_MS) this.retryNow();
  }

  startPinging() {
    this.stopPinging();
    const socket = this;
    function handlePingTimer() {
      const ws = socket.ws;
      if (ws === null || ws.readyState !== WebSocket.OPEN) return;
      if (Date.now() - socket.lastHeard > SILENCE_LIMIT_MS) {
        ws.close(1000, "silent");
        return;
      }
      ws.send(JSON.stringify({ type: "ping" }));
    }
    this.pingTimer = window.setInterval(handlePingTimer, PING_EVERY_MS);
  }

  stopPinging() {
    if (this.pingTimer) window.clearInterval(this.pingTimer);
    this.pingTimer = 0;
  }

  // Send a frame (an object) now; false when not connected.
  send(frame) {
    if (this.ws === null || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }
}
