// "Share my location": watch the device's position and send it to the room.
//
// States: "off", "locating" (watching, no fix yet), "on" (fixes are being sent).
// Browsers give heading NaN when standing still and null for what they do not know;
// such fields are left out of the frame (docs/protocol.md).

import { t } from "./format.js";

const OPTIONAL = ["accuracy", "altitude", "speed", "heading"];

export function frameFromPosition(position, { withTs = true } = {}) {
  const coords = position.coords;
  const frame = { type: "position", lat: coords.latitude, lon: coords.longitude };
  for (const field of OPTIONAL) {
    const value = coords[field];
    if (typeof value === "number" && Number.isFinite(value)) frame[field] = value;
  }
  if (frame.accuracy !== undefined && frame.accuracy < 0) delete frame.accuracy;
  if (frame.speed !== undefined && frame.speed < 0) delete frame.speed;
  if (frame.heading !== undefined && (frame.heading < 0 || frame.heading > 360)) {
    delete frame.heading;
  }
  if (withTs) frame.ts = Math.round(position.timestamp || Date.now());
  return frame;
}

export class LocationSharer {
  constructor({ send, onChange, onError, keepAliveMs }) {
    this.send = send;
    this.onChange = onChange;
    this.onError = onError;
    this.keepAliveMs = keepAliveMs;
    this.state = "off";
    this.watchId = null;
    this.lastFix = null;
    this.lastSentAt = 0;
    this.withTs = true;
    this.keepAliveTimer = 0;
  }

  get active() {
    return this.state !== "off";
  }

  setKeepAlive(ms) {
    if (Number.isFinite(ms) && ms > 0) this.keepAliveMs = ms;
  }

  start() {
    if (this.active) return;
    if (!("geolocation" in navigator)) {
      this.onError(t("This browser cannot tell its location."));
      return;
    }
    const sharer = this;
    function handlePosition(position) {
      sharer.lastFix = position;
      sharer.sendFix();
    }
    function handleError(error) {
      if (error.code === error.PERMISSION_DENIED) {
        sharer.stop({ tellServer: false });
        sharer.onError(t("Location permission was refused; allow it in the browser to share."));
      } else if (sharer.lastFix === null) {
        // Transient (no signal, timeout): the watch goes on; say so only while
        // there is no position at all yet.
        sharer.onError(t("Waiting for a location fix…"));
      }
    }
    this.state = "locating";
    this.watchId = navigator.geolocation.watchPosition(handlePosition, handleError, {
      enableHighAccuracy: true,
    });
    this.startKeepAlive();
    this.onChange(this.state);
  }

  // Stop watching; tell the room unless asked not to (the server may stop us).
  stop({ tellServer = true } = {}) {
    if (this.watchId !== null) navigator.geolocation.clearWatch(this.watchId);
    this.watchId = null;
    this.lastFix = null;
    this.stopKeepAlive();
    if (tellServer) this.send({ type: "stop" });
    const was = this.state;
    this.state = "off";
    if (was !== "off") this.onChange(this.state);
  }

  sendFix({ refresh = false } = {}) {
    if (this.lastFix === null) return;
    const frame = frameFromPosition(this.lastFix, { withTs: this.withTs });
    // watchPosition reports changes only; a device standing still is still there.
    if (refresh && frame.ts !== undefined) frame.ts = Math.max(frame.ts, Date.now());
    if (this.send(frame)) {
      this.lastSentAt = Date.now();
      if (this.state !== "on") {
        this.state = "on";
        this.onChange(this.state);
      }
    }
  }

  // After a reconnect: the room gets our position again at once (still current:
  // the watch reports changes only).
  resend() {
    if (this.active) this.sendFix({ refresh: true });
  }

  // The server refused our device time (a clock far off): send without it.
  dropDeviceTime() {
    this.withTs = false;
  }

  myPosition() {
    if (this.lastFix === null) return null;
    return { lat: this.lastFix.coords.latitude, lon: this.lastFix.coords.longitude };
  }

  startKeepAlive() {
    this.stopKeepAlive();
    const sharer = this;
    function handleKeepAlive() {
      if (Date.now() - sharer.lastSentAt >= sharer.keepAliveMs) {
        sharer.sendFix({ refresh: true });
      }
    }
    this.keepAliveTimer = window.setInterval(handleKeepAlive, 1000);
  }

  stopKeepAlive() {
    if (this.keepAliveTimer) window.clearInterval(this.keepAliveTimer);
    this.keepAliveTimer = 0;
  }
}
