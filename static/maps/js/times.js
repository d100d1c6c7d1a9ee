// Server times on the pages (manage, connect): <time datetime="ISO" data-format="...">
// rendered in this browser's locale and time zone, with the map's wording.
//
// data-format="ago": "just now", "8 s ago", "3 min ago" (format.js formatAgo), the
// local date and time as its title; data-format="in": "in 3 days" (format.js formatIn),
// the same title; data-format="local": the local date and time (the time alone today).
// The page's server time (data-server-now on <body>, epoch ms) corrects this
// device's clock, as clock.js does on the map.

import { formatAgo, formatClock, formatIn } from "./format.js";

const REFRESH_MS = 5000;
let offsetMs = 0;

// In the page's language (a Chinese page in an English browser: Chinese dates), with
// the date always.
function localText(moment) {
  return formatClock(moment.getTime(), null);
}

export function renderTimes(root = document) {
  const now = Date.now() + offsetMs;
  for (const element of root.querySelectorAll("time[data-format]")) {
    const moment = new Date(element.getAttribute("datetime"));
    if (Number.isNaN(moment.getTime())) continue;
    const local = localText(moment);
    const format = element.dataset.format;
    const text = format === "ago" ? formatAgo(now - moment.getTime())
      : format === "in" ? formatIn(moment.getTime(), now) : formatClock(moment.getTime(), now);
    if (element.textContent !== text) element.textContent = text;
    element.title = local;
  }
}

export function startTimes() {
  const serverNow = Number(document.body.dataset.serverNow);
  if (Number.isFinite(serverNow) && serverNow > 0) offsetMs = serverNow - Date.now();
  renderTimes();
  window.setInterval(renderTimes, REFRESH_MS);
}
