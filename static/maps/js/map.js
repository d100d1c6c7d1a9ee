// The Leaflet map and its tiles. Leaflet is the classic script loaded before the
// modules (global L, from django-leaflet's static files).

import { t } from "./format.js";

const WORLD_CENTER = [30, 10];
const WORLD_ZOOM = 2;

// Shown once when tiles cannot load (offline, blocked tile server): the markers and
// the list keep working on a plain background, and the user knows why it is blank.
function addOfflineNote(map) {
  const OfflineNote = L.Control.extend({
    options: { position: "bottomleft" },
    onAdd() {
      const element = L.DomUtil.create("div", "tiles-offline-note");
      element.id = "tiles-offline";
      element.textContent = t("Map tiles could not load; positions still update.");
      return element;
    },
  });
  new OfflineNote().addTo(map);
}

export function createMap(element, config) {
  const map = L.map(element, {
    center: WORLD_CENTER,
    zoom: WORLD_ZOOM,
    worldCopyJump: true,
    zoomControl: false,
  });
  // Leaflet's own texts are English: the zoom titles and the attribution's prefix are
  // given in the page's language (the prefix built as elements, its text as text).
  L.control.zoom({
    position: "bottomright", zoomInTitle: t("Zoom in"), zoomOutTitle: t("Zoom out"),
  }).addTo(map);
  const leaflet = document.createElement("a");
  leaflet.href = "https://leafletjs.com";
  leaflet.title = t("A JavaScript library for interactive maps");
  leaflet.textContent = "Leaflet";
  map.attributionControl.setPrefix(leaflet.outerHTML);
  L.control.scale({ position: "bottomright", imperial: false }).addTo(map);

  const tiles = L.tileLayer(config.tileUrl, {
    attribution: config.tileAttribution,
    maxZoom: 19,
  });
  let offline = false;
  function handleTileError() {
    if (offline) return;
    offline = true;
    element.classList.add("tiles-offline");
    addOfflineNote(map);
  }
  function handleTileLoad() {
    if (offline) return;
    element.classList.remove("tiles-offline");
  }
  tiles.on("tileerror", handleTileError);
  tiles.on("tileload", handleTileLoad);
  tiles.addTo(map);
  return map;
}

// Fit the view to the given [lat, lon] points; one point is shown at street level.
// `padding` is Leaflet's paddingTopLeft / paddingBottomRight, keeping the points
// clear of the controls drawn over the map.
export function fitPoints(map, points, padding = {}) {
  if (points.length === 0) return false;
  const bounds = L.latLngBounds(points);
  map.fitBounds(bounds, { ...padding, maxZoom: points.length === 1 ? 15 : 16 });
  return true;
}
