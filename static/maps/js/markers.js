// One marker per sharing member: a coloured dot with a name label, an accuracy
// circle, a heading arrow when the heading is known, and a short trail. A marker is
// created once and then moved with setLatLng (animated between fixes), never
// re-created; it is removed when its member stops sharing.

import { tf } from "./format.js";

const MOVE_MS = 700;

function easeOut(t) {
  return 1 - (1 - t) ** 3;
}

function buildIcon(member, you) {
  const root = document.createElement("div");
  root.className = you ? "gs-pin is-you" : "gs-pin";
  root.dataset.memberId = String(member.id);
  const arrow = document.createElement("div");
  arrow.className = "gs-arrow";
  arrow.hidden = true;
  const dot = document.createElement("div");
  dot.className = "gs-dot";
  const label = document.createElement("div");
  label.className = "gs-label";
  const name = document.createElement("span");
  name.className = "gs-name";
  const ago = document.createElement("span");
  ago.className = "gs-ago";
  label.append(name, ago);
  root.append(arrow, dot, label);
  const icon = L.divIcon({
    className: "gs-marker",
    html: root,
    iconSize: [22, 22],
    iconAnchor: [11, 11],
  });
  const parts = { root, arrow, dot, name, ago, you };
  paint(parts, member);
  return { icon, parts };
}

function paint(parts, member) {
  parts.root.style.setProperty("--member-color", member.color || "#2563eb");
  // My own marker says so: "Ana (you)", with a ring of its own (map.css .is-you).
  parts.name.textContent = parts.you ? tf("%(name)s (you)", { name: member.name ?? "?" }) : (member.name ?? "?");
}

export class MarkerLayer {
  constructor(map, { trailMs = 600000, onClick = null, me = null } = {}) {
    this.map = map;
    this.me = me;
    this.trailMs = trailMs;
    this.onClick = onClick;
    this.items = new Map();
  }

  setTrailMs(trailMs) {
    if (Number.isFinite(trailMs) && trailMs >= 0) this.trailMs = trailMs;
  }

  // Show `position` (a protocol position) for `member`; `seenMs` is the server time
  // the position was received, used to age the trail.
  update(member, position, seenMs) {
    const target = L.latLng(position.lat, position.lon);
    let item = this.items.get(member.id);
    if (item === undefined) {
      item = this.create(member, target);
    } else {
      paint(item.parts, member);
      this.moveTo(item, target);
    }
    item.target = target;
    item.position = position;
    this.updateAccuracy(item, position);
    this.updateHeading(item, position);
    this.extendTrail(item, target, seenMs);
    return item;
  }

  create(member, target) {
    const { icon, parts } = buildIcon(member, member.id === this.me);
    const color = member.color || "#2563eb";
    const circle = L.circle(target, {
      radius: 0,
      color,
      weight: 1,
      opacity: 0.5,
      fillColor: color,
      fillOpacity: 0.12,
      interactive: false,
    }).addTo(this.map);
    const trail = L.polyline([], {
      color,
      weight: 4,
      opacity: 0.55,
      lineCap: "round",
      interactive: false,
    }).addTo(this.map);
    const marker = L.marker(target, {
      icon,
      title: member.name,
      alt: member.name,
      riseOnHover: true,
      keyboard: true,
    }).addTo(this.map);
    const item = {
      id: member.id,
      marker,
      circle,
      trail,
      parts,
      points: [],
      target,
      position: null,
      stale: false,
      frame: 0,
    };
    const onClick = this.onClick;
    function handleMarkerClick() {
      if (onClick) onClick(item.id);
    }
    marker.on("click", handleMarkerClick);
    this.items.set(member.id, item);
    return item;
  }

  // Glide from where the marker is drawn now to `target`; a hidden page (no
  // animation frames) or a long jump moves at once.
  moveTo(item, target) {
    if (item.frame) cancelAnimationFrame(item.frame);
    item.frame = 0;
    const from = item.marker.getLatLng();
    const far = this.map.distance(from, target) > 50000;
    if (document.hidden || far || from.equals(target)) {
      item.marker.setLatLng(target);
      item.circle.setLatLng(target);
      return;
    }
    const started = performance.now();
    function step(now) {
      const t = Math.min(1, (now - started) / MOVE_MS);
      const k = easeOut(t);
      const latlng = L.latLng(
        from.lat + (target.lat - from.lat) * k,
        from.lng + (target.lng - from.lng) * k,
      );
      item.marker.setLatLng(latlng);
      item.circle.setLatLng(latlng);
      item.frame = t < 1 ? requestAnimationFrame(step) : 0;
    }
    item.frame = requestAnimationFrame(step);
  }

  updateAccuracy(item, position) {
    const accuracy = position.accuracy;
    if (Number.isFinite(accuracy) && accuracy > 0) {
      item.circle.setRadius(accuracy);
      item.circle.setStyle({ opacity: item.stale ? 0.2 : 0.5, fillOpacity: item.stale ? 0.05 : 0.12 });
    } else {
      item.circle.setRadius(0);
      item.circle.setStyle({ opacity: 0, fillOpacity: 0 });
    }
  }

  updateHeading(item, position) {
    const heading = position.heading;
    const known = Number.isFinite(heading);
    item.parts.arrow.hidden = !known;
    if (known) item.parts.arrow.style.transform = `rotate(${heading}deg)`;
  }

  extendTrail(item, target, seenMs) {
    const last = item.points[item.points.length - 1];
    if (last === undefined || last.lat !== target.lat || last.lng !== target.lng) {
      item.points.push({ lat: target.lat, lng: target.lng, at: seenMs });
    }
    this.pruneTrail(item, seenMs);
  }

  pruneTrail(item, nowMs) {
    const cutoff = nowMs - this.trailMs;
    let drop = 0;
    while (drop < item.points.length - 1 && item.points[drop].at < cutoff) drop += 1;
    if (drop > 0) item.points.splice(0, drop);
    item.trail.setLatLngs(item.points.map((p) => [p.lat, p.lng]));
  }

  // Age every trail and mark stale markers; `labels` maps member id to the "ago"
  // text shown under a stale marker's name.
  refresh(nowMs, staleIds, labels) {
    for (const item of this.items.values()) {
      this.pruneTrail(item, nowMs);
      this.setStale(item, staleIds.has(item.id), labels.get(item.id) || "");
    }
  }

  setStale(item, stale, agoText) {
    item.parts.ago.textContent = stale ? agoText : "";
    if (item.stale === stale) return;
    item.stale = stale;
    item.parts.root.classList.toggle("is-stale", stale);
    item.trail.setStyle({ opacity: stale ? 0.25 : 0.55, dashArray: stale ? "4 6" : null });
    if (item.position) this.updateAccuracy(item, item.position);
  }

  rename(member) {
    const item = this.items.get(member.id);
    if (item === undefined) return;
    paint(item.parts, member);
    item.marker.options.title = member.name;
    item.circle.setStyle({ color: member.color, fillColor: member.color });
    item.trail.setStyle({ color: member.color });
  }

  remove(memberId) {
    const item = this.items.get(memberId);
    if (item === undefined) return;
    if (item.frame) cancelAnimationFrame(item.frame);
    item.marker.remove();
    item.circle.remove();
    item.trail.remove();
    this.items.delete(memberId);
  }

  ids() {
    return [...this.items.keys()];
  }

  targetOf(memberId) {
    const item = this.items.get(memberId);
    return item === undefined ? null : item.target;
  }

  targets() {
    return [...this.items.values()].map((item) => [item.target.lat, item.target.lng]);
  }

  // For tests and debugging: each marker's latest fix, drawn position, trail, look.
  describe() {
    const result = {};
    for (const item of this.items.values()) {
      const drawn = item.marker.getLatLng();
      result[item.id] = {
        lat: item.target.lat,
        lon: item.target.lng,
        drawn: [drawn.lat, drawn.lng],
        trail: item.points.length,
        stale: item.stale,
        heading: item.parts.arrow.hidden ? null : item.position.heading,
        accuracy: item.position.accuracy ?? null,
        you: item.parts.you,
      };
    }
    return result;
  }
}
