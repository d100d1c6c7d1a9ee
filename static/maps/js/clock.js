// The server's clock, as seen from this browser.
//
// Positions carry `seen`, the server's receive time (epoch ms). Comparing it with
// Date.now() would be off by however wrong this device's clock is, so every snapshot
// (and pong) re-measures the offset from the server's `now`.

let offsetMs = 0;

export function syncClock(serverNowMs) {
  if (Number.isFinite(serverNowMs)) {
    offsetMs = serverNowMs - Date.now();
  }
}

export function serverNow() {
  return Date.now() + offsetMs;
}

export function clockOffset() {
  return offsetMs;
}
