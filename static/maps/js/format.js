// Human-readable times and distances for the member list and marker labels.

const EARTH_RADIUS_M = 6371008.8;

// Translated pages load Django's JavaScript catalog (window.gettext); on the others
// the strings stay English.
export function t(text) {
  return typeof window !== "undefined" && typeof window.gettext === "function"
    ? window.gettext(text) : text;
}

function tn(format, value) {
  return t(format).replace("%s", String(value));
}

// A translated text with named values: tf("Follow %(name)s", { name }).
export function tf(text, values) {
  return t(text).replace(/%\((\w+)\)s/g, (_match, key) => String(values[key]));
}

// "just now", "12 s ago", "2 min ago", "3 h ago", "2 d ago".
export function formatAgo(ms) {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 5) return t("just now");
  if (seconds < 60) return tn("%s s ago", seconds);
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return tn("%s min ago", minutes);
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return tn("%s h ago", hours);
  return tn("%s d ago", Math.floor(hours / 24));
}

// Great-circle distance in metres (haversine on the mean Earth radius, IUGG).
export function distanceMeters(a, b) {
  const toRad = Math.PI / 180;
  const dLat = (b.lat - a.lat) * toRad;
  const dLon = (b.lon - a.lon) * toRad;
  const h =
    Math.sin(dLat / 2) ** 2 +
    Math.cos(a.lat * toRad) * Math.cos(b.lat * toRad) * Math.sin(dLon / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

export function formatDistance(meters) {
  if (meters < 1000) return tn("%s m", Math.round(meters));
  if (meters < 10000) return tn("%s km", (meters / 1000).toFixed(1));
  return tn("%s km", Math.round(meters / 1000));
}

// A share's time left: "12 min left", "3 h 5 min left"; "" for an open-ended share.
export function formatLeft(untilMs, nowMs) {
  if (!Number.isFinite(untilMs)) return "";
  const minutes = Math.max(0, Math.ceil((untilMs - nowMs) / 60000));
  if (minutes < 60) return tn("%s min left", minutes);
  const hours = Math.floor(minutes / 60);
  return minutes % 60
    ? tf("%(hours)s h %(minutes)s min left", { hours, minutes: minutes % 60 })
    : tn("%s h left", hours);
}

// Speed on the wire is m/s; people read km/h. "" when unknown.
export function formatSpeed(metresPerSecond) {
  if (!Number.isFinite(metresPerSecond)) return "";
  const kmh = metresPerSecond * 3.6;
  return `${kmh < 10 ? kmh.toFixed(1) : Math.round(kmh)} km/h`;
}

const COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];

// Heading in degrees clockwise from true north: "270° (W)". "" when unknown.
export function formatHeading(degrees) {
  if (!Number.isFinite(degrees)) return "";
  const point = COMPASS[Math.round(degrees / 45) % 8];
  return `${Math.round(degrees) % 360}° (${point})`;
}

// A battery level (percent) is low from here on: shown in red, at a glance.
export const LOW_BATTERY = 20;

export function formatBattery(percent) {
  if (!Number.isFinite(percent)) return "";
  return tn("battery %s%", Math.round(percent));
}

// The battery and whether the phone is on a charger (full counts): "battery 62% · ⚡
// charging". Either part may be unknown; "" when both are. `labelled: false` leaves
// out the word "battery" ("62% · ⚡ charging"), for a place that already says it
// (the marker card's "Battery" row).
export function formatPower(percent, charging, { labelled = true } = {}) {
  const parts = [];
  if (Number.isFinite(percent)) {
    parts.push(labelled ? formatBattery(percent) : `${Math.round(percent)}%`);
  }
  if (charging === true) parts.push(`⚡ ${t("charging")}`);
  else if (charging === false) parts.push(t("not charging"));
  return parts.join(" · ");
}

// The locale for Intl's dates: the browser's own (undefined) when it speaks the page's
// language (an en-GB browser on an "en" page keeps its 24-hour clock), else the page's
// <html lang> ("zh-hans"): a Chinese page in a browser set to English shows Chinese
// dates. undefined too where there is no page.
export function pageLocale() {
  const lang = typeof document === "undefined" ? "" : document.documentElement?.lang;
  if (!lang) return undefined;
  const browser = typeof navigator === "undefined" ? "" : navigator.language || "";
  if (browser.split("-")[0].toLowerCase() === lang.split("-")[0].toLowerCase()) {
    return undefined;
  }
  try {
    return Intl.DateTimeFormat.supportedLocalesOf([lang]).length ? lang : undefined;
  } catch {
    return undefined;
  }
}

// The local time of an epoch-ms moment in this browser's zone, with its date only when
// it is not today (`nowMs`): "14:02:03", "5 Jan 2025, 14:02:03".
// `nowMs` null: always with the date (a tooltip).
export function formatClock(ms, nowMs = Date.now()) {
  const moment = new Date(ms);
  if (nowMs !== null && moment.toDateString() === new Date(nowMs).toDateString()) {
    return moment.toLocaleTimeString(pageLocale(), { timeStyle: "medium" });
  }
  return moment.toLocaleString(pageLocale(), { dateStyle: "medium", timeStyle: "medium" });
}

// When a future moment comes, in words: "in 5 min", "in 3 h", "in 2 days"; "now" when
// it has come.
export function formatIn(ms, nowMs) {
  const minutes = Math.ceil((ms - nowMs) / 60000);
  if (minutes <= 0) return t("now");
  if (minutes < 60) return tn("in %s min", minutes);
  const hours = Math.round(minutes / 60);
  if (hours < 48) return tn("in %s h", hours);
  return tn("in %s days", Math.round(hours / 24));
}
