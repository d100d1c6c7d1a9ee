// History mode: where everyone was. Draws each member's track of a chosen range
// (coloured per member), marks and lists their stays, and moves a marker per member
// to where they were at the slider's time, playing at 1x to 1000x. The live map goes
// on underneath (its panes are hidden, not torn down), so leaving history mode is
// instant and needs no reload.
//
// Tracks come from /api/rooms/<room>/history simplified for the map's zoom (one
// pixel; maps/tracks.py says the rule), and are fetched again when zooming in past
// the zoom they were drawn for.

import { fitPoints } from "./map.js";
import {
  flatten,
  formatDuration,
  formatMoment,
  isSameDay,
  localDate,
  localDateTime,
  positionAt,
  rangeFor,
} from "./timeline.js";
import { t, tf } from "./format.js";

const LINES_PANE = "gsHistoryLines";
const MARKERS_PANE = "gsHistoryMarkers";

function element(id) {
  return document.getElementById(id);
}

// A span holding `text` as text: what Leaflet's tooltips and popups are given, as they
// insert a string as HTML.
function textElement(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span;
}

function historyPin(color, name) {
  const root = document.createElement("div");
  root.className = "gs-pin gs-history-pin";
  root.style.setProperty("--member-color", color);
  const dot = document.createElement("div");
  dot.className = "gs-dot";
  const label = document.createElement("div");
  label.className = "gs-label";
  const text = document.createElement("span");
  text.className = "gs-name";
  text.textContent = name;
  label.append(text);
  root.append(dot, label);
  return L.divIcon({ className: "gs-marker", html: root, iconSize: [22, 22], iconAnchor: [11, 11] });
}

export class HistoryMode {
  constructor(map, options) {
    this.map = map;
    this.options = options;
    this.active = false;
    this.data = null; // the last answer: {since, until, tolerance_m, features}
    this.tracks = new Map(); // member id -> {flat, line, marker, stays, color, name}
    this.stayLayers = [];
    this.time = 0;
    this.playing = false;
    this.frame = 0;
    this.lastFrame = 0;
    this.fetchedZoom = null;
    this.request = 0;
    this.ui = {
      open: element("history-open"),
      panel: element("history-panel"),
      close: element("history-close"),
      who: element("history-who"),
      range: element("history-range"),
      day: element("history-day"),
      from: element("history-from"),
      to: element("history-to"),
      dayRow: element("history-day-row"),
      spanRow: element("history-span-row"),
      status: element("history-status"),
      slider: element("history-slider"),
      time: element("history-time"),
      play: element("history-play"),
      speed: element("history-speed"),
      stays: element("history-stays"),
      gpx: element("history-gpx"),
      geojson: element("history-geojson"),
      myData: element("history-my-data"),
    };
    this.bind();
  }

  bind() {
    const self = this;
    function handleOpen() {
      self.enter();
    }
    function handleClose() {
      self.leave();
    }
    function handleChoice() {
      self.showRangeInputs();
      self.load();
    }
    function handleSlider() {
      self.pause();
      self.seek(Number(self.ui.slider.value));
    }
    function handlePlay() {
      if (self.playing) self.pause();
      else self.play();
    }
    function handleStayClick(event) {
      const button = event.target.closest("button[data-start]");
      if (button === null) return;
      self.pause();
      self.seek(Number(button.dataset.start));
      self.map.setView([Number(button.dataset.lat), Number(button.dataset.lon)], Math.max(self.map.getZoom(), 16));
    }
    function handleZoomEnd() {
      if (self.active && self.fetchedZoom !== null && self.map.getZoom() > self.fetchedZoom) {
        self.load({ keepTime: true, fit: false });
      }
    }
    function handleKey(event) {
      if (event.key === "Escape" && self.active) self.leave();
    }
    this.ui.open.addEventListener("click", handleOpen);
    this.ui.close.addEventListener("click", handleClose);
    this.ui.who.addEventListener("change", handleChoice);
    this.ui.range.addEventListener("change", handleChoice);
    this.ui.day.addEventListener("change", handleChoice);
    this.ui.from.addEventListener("change", handleChoice);
    this.ui.to.addEventListener("change", handleChoice);
    this.ui.slider.addEventListener("input", handleSlider);
    this.ui.play.addEventListener("click", handlePlay);
    this.ui.stays.addEventListener("click", handleStayClick);
    this.map.on("zoomend", handleZoomEnd);
    document.addEventListener("keydown", handleKey);
    this.ui.myData.href = this.options.myDataUrl;
  }

  panes() {
    if (!this.map.getPane(LINES_PANE)) {
      this.map.createPane(LINES_PANE).classList.add("gs-history-pane");
      this.map.getPane(LINES_PANE).style.zIndex = "420";
      this.map.createPane(MARKERS_PANE).classList.add("gs-history-pane");
      this.map.getPane(MARKERS_PANE).style.zIndex = "640";
    }
  }

  enter() {
    if (this.active) return;
    this.active = true;
    this.panes();
    document.body.classList.add("is-history");
    this.ui.panel.hidden = false;
    const now = Date.now();
    if (!this.ui.day.value) this.ui.day.value = localDate(now);
    if (!this.ui.from.value) this.ui.from.value = localDateTime(now - 3 * 3600000);
    if (!this.ui.to.value) this.ui.to.value = localDateTime(now);
    this.showRangeInputs();
    this.load();
    this.ui.close.focus();
  }

  leave() {
    if (!this.active) return;
    this.active = false;
    this.pause();
    this.request += 1; // answers still on their way are dropped
    this.clear();
    this.data = null;
    document.body.classList.remove("is-history");
    this.ui.panel.hidden = true;
    this.ui.open.focus();
  }

  showRangeInputs() {
    const choice = this.ui.range.value;
    this.ui.dayRow.hidden = choice !== "day";
    this.ui.spanRow.hidden = choice !== "span";
  }

  selection() {
    const range = rangeFor(this.ui.range.value, Date.now(), {
      day: this.ui.day.value,
      from: this.ui.from.value,
      to: this.ui.to.value,
    });
    if (range === null) return null;
    const member = this.ui.who.value;
    return { ...range, member: member === "all" ? null : member };
  }

  query(selection, extra = {}) {
    const params = new URLSearchParams({ since: String(selection.since), until: String(selection.until), ...extra });
    if (selection.member) params.set("member", selection.member);
    return params.toString();
  }

  async load({ keepTime = false, fit = true } = {}) {
    const selection = this.selection();
    if (selection === null) {
      this.setStatus(t("Pick a day, or a start before the end."));
      return;
    }
    this.pause();
    const zoom = this.map.getZoom();
    const ticket = ++this.request;
    this.setStatus(t("Loading…"));
    this.ui.gpx.href = `${this.options.gpxUrl}?${this.query(selection)}`;
    this.ui.geojson.href = `${this.options.geojsonUrl}?${this.query(selection)}`;
    let data;
    try {
      const response = await fetch(`${this.options.url}?${this.query(selection, { zoom: String(zoom) })}`, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      data = await response.json();
      if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    } catch (error) {
      if (ticket === this.request) this.setStatus(tf("History could not load: %(error)s", { error: error.message }));
      return;
    }
    if (ticket !== this.request || !this.active) return;
    this.fetchedZoom = zoom;
    const previous = this.time;
    this.show(data);
    this.seek(keepTime && previous >= data.since && previous <= data.until ? previous : this.firstTime());
    if (fit) this.fit();
  }

  clear() {
    for (const track of this.tracks.values()) {
      track.line.remove();
      track.marker.remove();
    }
    for (const layer of this.stayLayers) layer.remove();
    this.tracks = new Map();
    this.stayLayers = [];
    this.ui.stays.replaceChildren();
  }

  show(data) {
    this.clear();
    this.data = data;
    const stays = [];
    for (const feature of data.features) {
      const p = feature.properties;
      if (p.kind === "track") {
        const flat = flatten(feature);
        const parts = feature.geometry.type === "LineString" ? [feature.geometry.coordinates] : feature.geometry.coordinates;
        const line = L.polyline(
          parts.map((part) => part.map((c) => [c[1], c[0]])),
          { pane: LINES_PANE, color: p.color, weight: 4, opacity: 0.8, lineCap: "round", interactive: false },
        ).addTo(this.map);
        const marker = L.marker(flat.points[0], {
          pane: MARKERS_PANE,
          icon: historyPin(p.color, p.name),
          title: p.name,
          alt: p.name,
          keyboard: false,
        });
        this.tracks.set(p.member, { flat, line, marker, color: p.color, name: p.name, points: p.points });
      } else if (p.kind === "stay") {
        stays.push(feature);
      }
    }
    for (const stay of stays) {
      const p = stay.properties;
      const [lon, lat] = stay.geometry.coordinates;
      const circle = L.circleMarker([lat, lon], {
        pane: LINES_PANE,
        radius: 7,
        color: "#fff",
        weight: 2,
        fillColor: p.color,
        fillOpacity: 0.95,
      }).addTo(this.map);
      // An element, never a string: Leaflet puts a string in as HTML, and names are
      // whatever members typed.
      circle.bindTooltip(textElement(`${p.name}: ${this.moment(p.start)}, ${formatDuration(p.duration_ms)}`));
      this.stayLayers.push(circle);
    }
    this.renderStays(stays);
    this.addChoices();
    const slider = this.ui.slider;
    slider.min = String(data.since);
    slider.max = String(data.until);
    slider.step = "1000";
    slider.disabled = this.tracks.size === 0;
    this.ui.play.disabled = this.tracks.size === 0;
    const total = [...this.tracks.values()].reduce((sum, track) => sum + track.points, 0);
    if (this.tracks.size === 0) {
      this.setStatus(t("No positions in this range."));
    } else {
      const who = this.tracks.size === 1 ? t("1 person") : tf("%(count)s people", { count: this.tracks.size });
      const values = { positions: total.toLocaleString(), who, stays: stays.length };
      this.setStatus(stays.length === 1
        ? tf("%(positions)s positions of %(who)s; %(stays)s stay (5 min or more within 50 m).", values)
        : tf("%(positions)s positions of %(who)s; %(stays)s stays (5 min or more within 50 m).", values));
    }
  }

  // People who joined after the page loaded appear in "Who" once they have a track.
  addChoices() {
    const known = new Set([...this.ui.who.options].map((option) => option.value));
    for (const [id, track] of this.tracks) {
      if (known.has(String(id))) continue;
      const option = document.createElement("option");
      option.value = String(id);
      option.textContent = track.name;
      this.ui.who.append(option);
    }
  }

  renderStays(stays) {
    const items = stays
      .slice()
      .sort((a, b) => a.properties.start - b.properties.start)
      .map((stay) => {
        const p = stay.properties;
        const li = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.className = "history-stay";
        button.dataset.start = String(p.start);
        button.dataset.lat = String(stay.geometry.coordinates[1]);
        button.dataset.lon = String(stay.geometry.coordinates[0]);
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = p.color;
        const text = document.createElement("span");
        text.textContent = `${p.name} · ${this.moment(p.start)} · ${formatDuration(p.duration_ms)}`;
        button.append(swatch, text);
        li.append(button);
        return li;
      });
    this.ui.stays.replaceChildren(...items);
  }

  moment(ms) {
    const data = this.data;
    return formatMoment(ms, data ? isSameDay(data.since, data.until) : true);
  }

  firstTime() {
    let first = Infinity;
    for (const track of this.tracks.values()) first = Math.min(first, track.flat.times[0]);
    return Number.isFinite(first) ? first : this.data.since;
  }

  // Move every member's marker to where they were at `t` (epoch ms).
  seek(t) {
    if (!this.data) return;
    this.time = Math.min(Math.max(t, this.data.since), this.data.until);
    this.ui.slider.value = String(this.time);
    this.ui.time.textContent = this.moment(this.time);
    for (const track of this.tracks.values()) {
      const at = positionAt(track.flat, this.time);
      if (at === null) {
        track.marker.remove();
        continue;
      }
      track.marker.setLatLng([at.lat, at.lon]);
      if (!this.map.hasLayer(track.marker)) track.marker.addTo(this.map);
    }
  }

  play() {
    if (!this.data || this.tracks.size === 0) return;
    if (this.time >= this.data.until) this.seek(this.firstTime());
    this.playing = true;
    this.ui.play.textContent = t("Pause");
    this.ui.play.setAttribute("aria-pressed", "true");
    this.lastFrame = performance.now();
    const self = this;
    function step(now) {
      if (!self.playing) return;
      const speed = Number(self.ui.speed.value) || 1;
      self.seek(self.time + (now - self.lastFrame) * speed);
      self.lastFrame = now;
      if (self.time >= self.data.until) {
        self.pause();
        return;
      }
      self.frame = requestAnimationFrame(step);
    }
    this.frame = requestAnimationFrame(step);
  }

  pause() {
    this.playing = false;
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.ui.play.textContent = t("Play");
    this.ui.play.setAttribute("aria-pressed", "false");
  }

  fit() {
    const points = [];
    for (const track of this.tracks.values()) {
      for (const latlng of track.line.getLatLngs().flat()) points.push([latlng.lat, latlng.lng]);
    }
    fitPoints(this.map, points, this.padding());
  }

  // Keep the tracks clear of the top bar and of the history panel (a side card on
  // wide screens, a bottom sheet on phones).
  padding() {
    const panel = this.ui.panel.getBoundingClientRect();
    const top = document.querySelector(".topbar").getBoundingClientRect().bottom;
    const side = panel.width < window.innerWidth * 0.6;
    const right = side ? window.innerWidth - panel.left : 0;
    const bottom = side ? 0 : window.innerHeight - panel.top;
    return { paddingTopLeft: [32, top + 24], paddingBottomRight: [right + 32, bottom + 24] };
  }

  setStatus(text) {
    this.ui.status.textContent = text;
  }

  // For tests and debugging: the mode, the range, the slider's time, each marker.
  describe() {
    const markers = {};
    for (const [id, track] of this.tracks) {
      if (!this.map.hasLayer(track.marker)) continue;
      const at = track.marker.getLatLng();
      markers[id] = { lat: at.lat, lon: at.lng };
    }
    return {
      active: this.active,
      loaded: this.data !== null,
      since: this.data ? this.data.since : null,
      until: this.data ? this.data.until : null,
      tolerance: this.data ? this.data.tolerance_m : null,
      time: this.time,
      playing: this.playing,
      markers,
      stays: this.ui.stays.children.length,
    };
  }
}
