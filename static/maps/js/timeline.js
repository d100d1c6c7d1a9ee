// Pure helpers of the history mode: time ranges in the browser's own time zone,
// where a member was at a moment, and how times and durations read. No DOM, no map.

const HOUR_MS = 3600000;

function localMidnight(ms) {
  const day = new Date(ms);
  day.setHours(0, 0, 0, 0);
  return day.getTime();
}

function nextMidnight(ms) {
  const day = new Date(localMidnight(ms));
  day.setDate(day.getDate() + 1);
  return day.getTime();
}

// `choice`: "hour", "today", "yesterday", "day" (with `day`, "YYYY-MM-DD"), or
// "span" (with `from` and `to`, "YYYY-MM-DDTHH:MM" local). Returns {since, until}
// in epoch ms, or null when the choice is incomplete.
export function rangeFor(choice, nowMs, { day = "", from = "", to = "" } = {}) {
  switch (choice) {
    case "hour":
      return { since: nowMs - HOUR_MS, until: nowMs };
    case "today":
      return { since: localMidnight(nowMs), until: nowMs };
    case "yesterday": {
      const today = localMidnight(nowMs);
      return { since: localMidnight(today - 1), until: today };
    }
    case "day": {
      if (!day) return null;
      const since = new Date(`${day}T00:00`).getTime();
      return Number.isFinite(since) ? { since, until: nextMidnight(since) } : null;
    }
    case "span": {
      const since = new Date(from).getTime();
      const until = new Date(to).getTime();
      if (!Number.isFinite(since) || !Number.isFinite(until) || until <= since) return null;
      return { since, until };
    }
    default:
      return null;
  }
}

// A member's drawn track as flat arrays: `times` (epoch ms, ascending), `points`
// ([lat, lon]) and `part` (which line of a MultiLineString each point is on).
export function flatten(feature) {
  const geometry = feature.geometry;
  const lines = geometry.type === "LineString" ? [geometry.coordinates] : geometry.coordinates;
  const times = geometry.type === "LineString" ? [feature.properties.times] : feature.properties.times;
  const flat = { times: [], points: [], part: [] };
  lines.forEach((line, index) => {
    line.forEach((position, i) => {
      flat.times.push(times[index][i]);
      flat.points.push([position[1], position[0]]);
      flat.part.push(index);
    });
  });
  return flat;
}

// Where the member was at `t` (epoch ms): linear between the two drawn points
// around it on the same line; held at a line's last point through a gap; null
// before the first point. Returns {lat, lon, moving} or null.
export function positionAt(flat, t) {
  const { times, points, part } = flat;
  const n = times.length;
  if (n === 0 || t < times[0]) return null;
  if (t >= times[n - 1]) return { lat: points[n - 1][0], lon: points[n - 1][1], moving: false };
  let low = 0;
  let high = n - 1;
  while (high - low > 1) {
    const mid = (low + high) >> 1;
    if (times[mid] <= t) low = mid;
    else high = mid;
  }
  const a = points[low];
  const b = points[high];
  if (part[low] !== part[high] || times[high] === times[low]) {
    return { lat: a[0], lon: a[1], moving: false };
  }
  const k = (t - times[low]) / (times[high] - times[low]);
  return { lat: a[0] + (b[0] - a[0]) * k, lon: a[1] + (b[1] - a[1]) * k, moving: true };
}

// "1 h 05 min", "12 min", "40 s".
export function formatDuration(ms) {
  const minutes = Math.floor(ms / 60000);
  if (minutes < 1) return `${Math.max(0, Math.round(ms / 1000))} s`;
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const dayTimeFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  hour: "2-digit",
  minute: "2-digit",
});

// The time of day alone when the range is within one local day, else with the day.
export function formatMoment(ms, sameDay) {
  return sameDay ? timeFormat.format(ms) : dayTimeFormat.format(ms);
}

export function isSameDay(a, b) {
  return localMidnight(a) === localMidnight(b - 1);
}

// "YYYY-MM-DD" and "YYYY-MM-DDTHH:MM" of a local time, for date inputs.
export function localDate(ms) {
  const d = new Date(ms);
  const pad = (v) => String(v).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export function localDateTime(ms) {
  const d = new Date(ms);
  const pad = (v) => String(v).padStart(2, "0");
  return `${localDate(ms)}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
