// The member list: who is online, sharing or stale, last seen, distance from me.
// Rows are kept per member id and updated in place (focus survives a refresh).

import { t, tf } from "./format.js";

// A member whose positions keep coming with no page of the room open is sharing from
// a phone app (or a browser tab that is still open elsewhere, or just closed): sharing
// and fresh, and presence says no socket. `device` names the share's source as the
// marker card does (protocol.js sourceLabel): a device, a browser, "this browser".
export function statusText(row) {
  const parts = [];
  if (row.online) {
    parts.push(t("Online"));
    if (row.sharing && row.stale) {
      parts.push(tf("stale, last seen %(ago)s", row));
    } else if (row.sharing) {
      parts.push(row.device ? tf("sharing from %(device)s, %(ago)s", row)
        : tf("sharing, %(ago)s", row));
    }
  } else if (row.sharing && !row.stale) {
    parts.push(row.device ? tf("Sharing from %(device)s, %(ago)s", row)
      : tf("Sharing, %(ago)s", row));
  } else if (row.sharing) {
    parts.push(t("Offline"), tf("stale, last seen %(ago)s", row));
  } else {
    parts.push(t("Offline"));
    if (row.ago) parts.push(tf("last seen %(ago)s", row));
  }
  if (row.place) parts.push(tf("at %(place)s", row));
  if (row.left) parts.push(row.left);
  if (row.battery) parts.push(row.battery);
  if (row.distance) parts.push(row.distance);
  if (row.role === "viewer") parts.push(t("viewer"));
  return parts.join(" · ");
}

export class MemberList {
  constructor(listElement, { onSelect }) {
    this.list = listElement;
    this.onSelect = onSelect;
    this.rows = new Map();
    this.order = "";
    const list = this.list;
    const select = this.onSelect;
    function handleListClick(event) {
      const button = event.target.closest("button.member-button");
      if (button === null || !list.contains(button)) return;
      select(Number(button.closest("li").dataset.memberId));
    }
    this.list.addEventListener("click", handleListClick);
  }

  createRow(id) {
    const li = document.createElement("li");
    li.className = "member";
    li.dataset.memberId = String(id);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "member-button";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.setAttribute("aria-hidden", "true");
    const text = document.createElement("span");
    text.className = "member-text";
    const name = document.createElement("span");
    name.className = "member-name";
    const status = document.createElement("span");
    status.className = "member-status";
    text.append(name, status);
    button.append(swatch, text);
    li.append(button);
    const row = { li, button, swatch, name, status };
    this.rows.set(id, row);
    return row;
  }

  // `rows`: [{id, name, color, role, you, online, sharing, stale, ago, left, battery,
  // device, distance, following}], already in display order; `left` is the share's
  // time left, `battery` the battery and charging text.
  render(rows) {
    const seen = new Set();
    for (const data of rows) {
      seen.add(data.id);
      const row = this.rows.get(data.id) || this.createRow(data.id);
      const { li, button, swatch, name, status } = row;
      li.dataset.online = String(data.online);
      li.dataset.sharing = String(data.sharing);
      li.dataset.stale = String(data.stale);
      li.dataset.you = String(data.you);
      li.dataset.lowBattery = String(Boolean(data.lowBattery));
      swatch.style.background = data.color;
      const label = data.you ? tf("%(name)s (you)", data) : data.name;
      if (name.textContent !== label) name.textContent = label;
      const text = statusText(data);
      if (status.textContent !== text) status.textContent = text;
      button.disabled = !data.sharing;
      button.setAttribute("aria-pressed", String(data.following));
      button.title = data.sharing
        ? tf("Follow %(name)s on the map", data) : tf("%(name)s is not sharing", data);
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.li.remove();
        this.rows.delete(id);
      }
    }
    const order = rows.map((r) => r.id).join(",");
    if (order !== this.order) {
      this.order = order;
      for (const data of rows) this.list.append(this.rows.get(data.id).li);
    }
  }
}
