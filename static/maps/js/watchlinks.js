// "Watch me" links on the map page: make one (for the share, or for a number of
// minutes), copy it, list and revoke them. The server keeps only each link's hash, so
// a link's URL is shown once, right after it is made.

import { t, tf } from "./format.js";

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

function describe(link) {
  if (link.ends_with_share) return t("Link until your share ends");
  const until = new Date(link.expires);
  const time = until.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  return tf("Link until %(time)s", { time });
}

export class WatchLinks {
  constructor(root, { url, onMessage }) {
    this.root = root;
    this.url = url;
    this.onMessage = onMessage;
    if (!root) return;
    this.minutes = root.querySelector("#watch-minutes");
    this.createButton = root.querySelector("#watch-create");
    this.fresh = root.querySelector("#watch-new");
    this.freshUrl = root.querySelector("#watch-url");
    this.copyButton = root.querySelector("#watch-copy");
    this.list = root.querySelector("#watch-list");
    const links = this;
    function handleToggle() {
      if (root.open) links.load();
    }
    function handleCreate() {
      links.create();
    }
    function handleCopy() {
      links.copy();
    }
    function handleListClick(event) {
      const button = event.target.closest("button[data-link]");
      if (button) links.revoke(Number(button.dataset.link));
    }
    root.addEventListener("toggle", handleToggle);
    this.createButton.addEventListener("click", handleCreate);
    this.copyButton.addEventListener("click", handleCopy);
    this.list.addEventListener("click", handleListClick);
  }

  async request(path, body) {
    const options = body === undefined
      ? { credentials: "same-origin" }
      : {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
          body: JSON.stringify(body),
        };
    const response = await fetch(path, options);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `the server answered ${response.status}`);
    return data;
  }

  // Reload the list if it is open (after my share ended, say).
  refresh() {
    if (this.root && this.root.open) this.load();
  }

  async load() {
    try {
      const data = await this.request(this.url);
      this.render(data.links);
    } catch (error) {
      this.onMessage(tf("Could not load your links: %(error)s", { error: error.message }));
    }
  }

  render(links) {
    const items = links.map((link) => {
      const li = document.createElement("li");
      li.className = "watch-link";
      li.dataset.link = String(link.id);
      const text = document.createElement("span");
      text.textContent = describe(link);
      const revoke = document.createElement("button");
      revoke.type = "button";
      revoke.className = "link-button";
      revoke.dataset.link = String(link.id);
      revoke.textContent = t("Revoke");
      li.append(text, revoke);
      return li;
    });
    if (items.length === 0) {
      const empty = document.createElement("li");
      empty.className = "watch-empty";
      empty.textContent = t("No links yet.");
      items.push(empty);
    }
    this.list.replaceChildren(...items);
  }

  async create() {
    const value = this.minutes.value;
    const minutes = value === "share" ? null : Number(value);
    try {
      const link = await this.request(this.url, { minutes });
      this.freshUrl.value = link.url;
      this.fresh.hidden = false;
      await this.copy();
      await this.load();
    } catch (error) {
      this.onMessage(error.message);
    }
  }

  async copy() {
    let copied = false;
    try {
      await navigator.clipboard.writeText(this.freshUrl.value);
      copied = true;
    } catch {
      this.freshUrl.select();
      copied = document.execCommand("copy");
    }
    this.onMessage(copied ? t("Watch link copied") : t("Select the link and copy it"));
  }

  async revoke(id) {
    try {
      await this.request(`${this.url}${id}/revoke/`, {});
      this.fresh.hidden = true;
      this.onMessage(t("Link revoked"));
      await this.load();
    } catch (error) {
      this.onMessage(error.message);
    }
  }
}
