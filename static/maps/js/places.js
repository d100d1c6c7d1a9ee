// Places on the map page: the room's places as circles, making one by clicking the
// map, the activity feed ("Ana arrived at School · 14:02"), and this member's own
// alerts. The server sends this page the place_event frames its member may see (the
// room's history visibility: everyone's, only their own, or none); which of them
// alert is chosen here, on the member's own page, from the rules they stored
// (GET/PUT /api/rooms/<room>/alerts), so nobody who did not ask is shown an alert.

import { distanceMeters, pageLocale, t, tf } from "./format.js";

const FEED_MAX = 50;
const DEFAULT_RADIUS_M = 100;

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

function timeOf(ms) {
  return new Date(ms).toLocaleTimeString(pageLocale(), { hour: "2-digit", minute: "2-digit" });
}

// Enter rule of maps/domain/places.py, without its memory: a position is at a place
// when its centre is inside the circle and its accuracy (metres; unknown counts as 0)
// is at most max(radius, 50 m). The nearest such place, or null. `position` is
// {lat, lon, accuracy}; `places` an iterable of {lat, lon, radius, name}. The list's
// "at School" comes from this: no hysteresis, so it can differ from the feed's
// arrived/left events for a fix at the edge.
export function placeAt(position, places) {
  if (!position) return null;
  const accuracy = Number.isFinite(position.accuracy) ? position.accuracy : 0;
  let best = null;
  let bestDistance = Infinity;
  for (const place of places) {
    const distance = distanceMeters(position, place);
    if (distance <= place.radius && accuracy <= Math.max(place.radius, 50)
        && distance < bestDistance) {
      best = place;
      bestDistance = distance;
    }
  }
  return best;
}

// True when the rule (`member`/`place` ids, null meaning any) covers the event.
export function ruleMatches(rule, event) {
  return (rule.member === null || rule.member === event.member)
    && (rule.place === null || rule.place === event.place);
}

// Whether this member's page alerts on the event: someone else's, and a rule covers it.
export function shouldAlert(event, rules, me) {
  return event.member !== me && rules.some((rule) => ruleMatches(rule, event));
}

// The feed's line for an event, given names: "Ana arrived at School · 14:02".
export function describeEvent(event, memberName, placeName) {
  const values = { member: memberName, place: placeName, time: timeOf(event.ts) };
  return event.kind === "enter" ? tf("%(member)s arrived at %(place)s · %(time)s", values)
    : tf("%(member)s left %(place)s · %(time)s", values);
}

function placeLabel(name) {
  const label = document.createElement("span");
  label.textContent = name;
  return label;
}

// Bounds ([[south, west], [north, east]] in degrees) around every place's circle; null
// when there is none. Leaflet computes a circle's bounds only on a map.
export function placesBounds(circles) {
  let bounds = null;
  for (const circle of circles) {
    const own = circle.getBounds();
    bounds = bounds === null ? L.latLngBounds(own.getSouthWest(), own.getNorthEast())
      : bounds.extend(own);
  }
  return bounds;
}

export class Places {
  // `onPicking(active)`: a place is being placed (true: the map must be free to tap),
  // or its spot was picked or the placing cancelled (false: show the form or the list).
  constructor(map, { config, memberName, members, onMessage, onPicking = () => {} }) {
    this.onPicking = onPicking;
    this.map = map;
    this.api = `/api/rooms/${config.roomId}`;
    this.me = config.memberId;
    this.isOwner = config.isOwner;
    this.memberName = memberName;
    this.members = members;
    this.onMessage = onMessage;
    this.places = new Map();
    this.circles = new Map();
    this.rules = [];
    this.pending = null;
    this.layer = L.layerGroup().addTo(map);
    this.el = {
      root: document.getElementById("places"),
      add: document.getElementById("place-add"),
      form: document.getElementById("place-form"),
      name: document.getElementById("place-name"),
      radius: document.getElementById("place-radius"),
      cancel: document.getElementById("place-cancel"),
      hint: document.getElementById("place-hint"),
      hintText: document.getElementById("place-hint-text"),
      hintCancel: document.getElementById("place-hint-cancel"),
      list: document.getElementById("place-list"),
      alertMember: document.getElementById("alert-member"),
      alertPlace: document.getElementById("alert-place"),
      alertAdd: document.getElementById("alert-add"),
      alertList: document.getElementById("alert-list"),
      notify: document.getElementById("alerts-notify"),
      feed: document.getElementById("feed-list"),
    };
    const places = this;
    function handleAdd() {
      places.startPicking();
    }
    function handleMapClick(event) {
      places.picked(event.latlng);
    }
    function handleSubmit(event) {
      event.preventDefault();
      places.save();
    }
    function handleCancel() {
      places.stopPicking();
    }
    function handleAlertAdd() {
      places.addRule();
    }
    function handleAlertListClick(event) {
      const button = event.target.closest("button[data-rule]");
      if (button) places.removeRule(Number(button.dataset.rule));
    }
    function handlePlaceListClick(event) {
      const button = event.target.closest("button[data-place]");
      if (button) places.remove(Number(button.dataset.place));
    }
    function handleNotify() {
      places.askPermission();
    }
    this.handleMapClick = handleMapClick;
    if (this.el.add) this.el.add.addEventListener("click", handleAdd);
    if (this.el.form) this.el.form.addEventListener("submit", handleSubmit);
    if (this.el.cancel) this.el.cancel.addEventListener("click", handleCancel);
    if (this.el.hintCancel) this.el.hintCancel.addEventListener("click", handleCancel);
    if (this.el.alertAdd) this.el.alertAdd.addEventListener("click", handleAlertAdd);
    if (this.el.alertList) this.el.alertList.addEventListener("click", handleAlertListClick);
    if (this.el.list) this.el.list.addEventListener("click", handlePlaceListClick);
    if (this.el.notify) this.el.notify.addEventListener("click", handleNotify);
    this.loadRules();
    this.renderNotify();
  }

  async request(path, method = "GET", body = undefined) {
    const options = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    if (method !== "GET") options.headers["X-CSRFToken"] = csrfToken();
    const response = await fetch(this.api + path, options);
    if (response.status === 204) return {};
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
    return data;
  }

  // -- places -----------------------------------------------------------------------

  setPlaces(list) {
    const seen = new Set();
    for (const place of list) {
      seen.add(place.id);
      this.places.set(place.id, place);
      let circle = this.circles.get(place.id);
      if (circle === undefined) {
        circle = L.circle([place.lat, place.lon], {
          radius: place.radius, color: "#0f766e", weight: 2, fillOpacity: 0.08,
          interactive: false, className: "place-circle",
        }).addTo(this.layer);
        // The place's name on the map, as a text node (never HTML).
        circle.bindTooltip(placeLabel(place.name), {
          permanent: true, direction: "center", className: "place-label",
        });
        this.circles.set(place.id, circle);
      } else {
        circle.setLatLng([place.lat, place.lon]);
        circle.setRadius(place.radius);
        circle.setTooltipContent(placeLabel(place.name));
      }
    }
    for (const id of [...this.places.keys()]) {
      if (!seen.has(id)) {
        this.places.delete(id);
        this.circles.get(id)?.remove();
        this.circles.delete(id);
      }
    }
    this.renderList();
    this.renderChoices();
  }

  // Forget everything of the room (the member was removed): circles, lists, feed.
  clear() {
    if (this.el.add) this.stopPicking();
    this.setPlaces([]);
    this.rules = [];
    this.renderRules();
    if (this.el.feed) this.el.feed.replaceChildren();
  }

  renderList() {
    const list = this.el.list;
    if (!list) return;
    list.replaceChildren();
    for (const place of this.places.values()) {
      const item = document.createElement("li");
      item.dataset.placeId = String(place.id);
      const label = document.createElement("span");
      label.textContent = `${place.name} (${Math.round(place.radius)} m)`;
      item.append(label);
      if (place.created_by === this.me || this.isOwner) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "link-button";
        button.dataset.place = String(place.id);
        button.textContent = t("Delete");
        item.append(" ", button);
      }
      list.append(item);
    }
  }

  startPicking() {
    // A touch screen is tapped, not clicked.
    const touch = window.matchMedia("(pointer: coarse)").matches;
    this.el.hintText.textContent = touch ? t("Tap the map where the place is.")
      : t("Click the map where the place is.");
    this.el.hint.hidden = false;
    this.onPicking(true);
    this.el.add.hidden = true;
    this.map.getContainer().classList.add("picking-place");
    this.map.on("click", this.handleMapClick);
  }

  picked(latlng) {
    this.pending = latlng;
    this.el.hint.hidden = true;
    this.el.form.hidden = false;
    this.map.off("click", this.handleMapClick);
    this.map.getContainer().classList.remove("picking-place");
    this.preview?.remove();
    this.preview = L.circle(latlng, { radius: Number(this.el.radius.value) || DEFAULT_RADIUS_M,
      color: "#0f766e", dashArray: "4 4", interactive: false }).addTo(this.layer);
    // The form comes back into view (the sheet opens again on a phone).
    this.onPicking(false);
    if (this.el.root) this.el.root.open = true;
    this.el.form.scrollIntoView({ block: "nearest" });
    this.el.name.focus();
  }

  stopPicking() {
    const wasPicking = !this.el.hint.hidden;
    this.pending = null;
    this.preview?.remove();
    this.preview = null;
    this.el.hint.hidden = true;
    this.el.form.hidden = true;
    this.el.add.hidden = false;
    this.map.off("click", this.handleMapClick);
    this.map.getContainer().classList.remove("picking-place");
    if (wasPicking) this.onPicking(false);
  }

  async save() {
    if (!this.pending) return;
    const body = {
      name: this.el.name.value,
      lat: Number(this.pending.lat.toFixed(6)),
      lon: Number(this.pending.lng.toFixed(6)),
      radius: Number(this.el.radius.value),
    };
    try {
      await this.request("/places", "POST", body);
      this.el.name.value = "";
      this.stopPicking();
    } catch (error) {
      this.onMessage(tf("Could not make the place: %(error)s", { error: error.message }));
    }
  }

  async remove(id) {
    try {
      await this.request(`/places/${id}`, "DELETE");
    } catch (error) {
      this.onMessage(tf("Could not delete the place: %(error)s", { error: error.message }));
    }
  }

  // -- the feed and alerts ------------------------------------------------------------

  // A line about the room in the feed: "Bo joined · 14:02" (joins, leaves, shares).
  addNote(text, ts = Date.now()) {
    if (!this.el.feed) return;
    const item = document.createElement("li");
    item.className = "note";
    item.textContent = `${text} · ${timeOf(ts)}`;
    this.el.feed.prepend(item);
    while (this.el.feed.children.length > FEED_MAX) this.el.feed.lastChild.remove();
  }

  addEvent(event) {
    const place = this.places.get(event.place);
    const text = describeEvent(event, this.memberName(event.member),
                               place ? place.name : t("a place"));
    const alert = shouldAlert(event, this.rules, this.me);
    if (this.el.feed) {
      const item = document.createElement("li");
      item.textContent = text;
      if (alert) item.className = "alert";
      this.el.feed.prepend(item);
      while (this.el.feed.children.length > FEED_MAX) this.el.feed.lastChild.remove();
    }
    if (alert && typeof Notification !== "undefined"
        && Notification.permission === "granted") {
      new Notification("geoshare", { body: text, tag: `place-${event.member}-${event.ts}` });
    }
  }

  async loadRules() {
    try {
      this.rules = (await this.request("/alerts")).rules;
    } catch {
      this.rules = [];
    }
    this.renderRules();
  }

  async storeRules(rules) {
    try {
      this.rules = (await this.request("/alerts", "PUT", { rules })).rules;
    } catch (error) {
      this.onMessage(tf("Could not save the alerts: %(error)s", { error: error.message }));
    }
    this.renderRules();
  }

  addRule() {
    const pick = (select) => (select.value === "" ? null : Number(select.value));
    const rule = { member: pick(this.el.alertMember), place: pick(this.el.alertPlace) };
    this.storeRules([...this.rules, rule]);
    this.askPermission();
  }

  removeRule(index) {
    this.storeRules(this.rules.filter((_rule, i) => i !== index));
  }

  // Asked only when the member turns alerts on (a click), never on page load.
  async askPermission() {
    if (typeof Notification === "undefined") return;
    if (Notification.permission === "default") await Notification.requestPermission();
    this.renderNotify();
  }

  renderNotify() {
    const button = this.el.notify;
    if (!button) return;
    const supported = typeof Notification !== "undefined";
    button.hidden = !supported || Notification.permission === "granted";
    button.disabled = supported && Notification.permission === "denied";
  }

  renderChoices() {
    const { alertMember, alertPlace } = this.el;
    if (!alertMember) return;
    const fill = (select, items) => {
      const value = select.value;
      select.replaceChildren();
      for (const [id, label] of items) {
        const option = document.createElement("option");
        option.value = id;
        option.textContent = label;
        select.append(option);
      }
      select.value = value;
      if (select.selectedIndex < 0) select.selectedIndex = 0;
    };
    fill(alertMember, [["", t("Anyone")], ...[...this.members().values()]
      .filter((m) => m.id !== this.me).map((m) => [String(m.id), m.name])]);
    fill(alertPlace, [["", t("any place")], ...[...this.places.values()]
      .map((p) => [String(p.id), p.name])]);
    this.renderRules();
  }

  renderRules() {
    const list = this.el.alertList;
    if (!list) return;
    list.replaceChildren();
    this.rules.forEach((rule, index) => {
      const who = rule.member === null ? t("Anyone") : this.memberName(rule.member);
      const where = rule.place === null ? t("any place")
        : (this.places.get(rule.place)?.name ?? t("a place"));
      const item = document.createElement("li");
      item.textContent = `${tf("%(who)s at %(where)s", { who, where })} `;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link-button";
      button.dataset.rule = String(index);
      button.textContent = t("Remove");
      item.append(button);
      list.append(item);
    });
  }
}
