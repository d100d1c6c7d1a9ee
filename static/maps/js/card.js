// The marker card: what is known about one member's latest fix, opened by tapping
// their marker (or their row). Filled from the room's state on every render.

import {
  LOW_BATTERY,
  formatAgo,
  formatClock,
  formatHeading,
  formatLeft,
  formatPower,
  formatSpeed,
  t,
  tf,
} from "./format.js";
import { sourceLabel } from "./protocol.js";

function row(label, value, className = "") {
  const item = document.createElement("div");
  item.className = `card-row ${className}`.trim();
  const term = document.createElement("dt");
  term.textContent = label;
  const detail = document.createElement("dd");
  detail.textContent = value;
  item.append(term, detail);
  return item;
}

export class MarkerCard {
  constructor(element, { onFollow, onClose }) {
    this.element = element;
    this.title = element.querySelector(".marker-card-name");
    this.facts = element.querySelector(".marker-card-facts");
    this.follow = element.querySelector(".marker-card-follow");
    this.close = element.querySelector(".marker-card-close");
    this.memberId = null;
    const card = this;
    function handleFollow() {
      if (card.memberId !== null) onFollow(card.memberId);
    }
    function handleClose() {
      card.hide();
      onClose();
    }
    this.follow.addEventListener("click", handleFollow);
    this.close.addEventListener("click", handleClose);
  }

  show(memberId) {
    this.memberId = memberId;
    this.element.hidden = false;
  }

  hide() {
    this.memberId = null;
    this.element.hidden = true;
  }

  // `member` (snapshot member), `position` (wire position or undefined), `now` (server
  // ms), `you` (this page's member), `following` (this card's member is followed),
  // `mine` (this browser's source: "browser:<id>").
  render({ member, position, now, you, following, mine = "" }) {
    if (this.memberId === null) return;
    if (member === undefined) {
      this.hide();
      return;
    }
    const name = you ? tf("%(name)s (you)", { name: member.name }) : member.name;
    if (this.title.textContent !== name) this.title.textContent = name;
    const rows = [];
    // The share's source, named as the member list names it (protocol.js).
    const device = sourceLabel(member, position, { you, mine });
    if (position === undefined) {
      rows.push(row(t("Position"), t("not sharing")));
    } else {
      const seen = position.seen ?? position.ts;
      rows.push(row(t("Device"), device, "card-device"));
      rows.push(row(t("Fix"), `${formatClock(position.ts)} (${formatAgo(now - seen)})`, "card-fix"));
      if (Number.isFinite(position.accuracy)) {
        rows.push(row(t("Accuracy"), `± ${Math.round(position.accuracy)} m`, "card-accuracy"));
      }
      if (Number.isFinite(position.speed)) {
        rows.push(row(t("Speed"), formatSpeed(position.speed), "card-speed"));
      }
      if (Number.isFinite(position.heading)) {
        rows.push(row(t("Heading"), formatHeading(position.heading), "card-heading"));
      }
      const power = formatPower(position.battery, position.charging, { labelled: false });
      if (power) {
        const low = position.battery <= LOW_BATTERY ? " low-battery" : "";
        const charging = position.charging === true ? " charging" : "";
        rows.push(row(t("Battery"), power, `card-battery${low}${charging}`));
      }
    }
    if (member.sharing) {
      const left = formatLeft(member.sharing_until, now);
      rows.push(row(t("Sharing"), left || t("until they stop"), "card-left"));
    }
    this.facts.replaceChildren(...rows);
    this.follow.hidden = position === undefined;
    this.follow.textContent = following ? t("Stop following") : t("Follow");
    this.follow.setAttribute("aria-pressed", String(following));
  }
}
