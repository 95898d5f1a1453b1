// The explorer page's script: fills the lists from the JSON API of the same process.
// Plain browser JavaScript, no build step, nothing fetched from elsewhere. Data from the API
// (titles hold any text) only ever reaches the page through textContent, never innerHTML.
"use strict";

(() => {
  const root = document.body.dataset.root || "";
  const pageVersion = document.body.dataset.version || "";
  const LIST_N = 10;
  const HISTORY_N = 20;
  const tokens = new Map(); // list id -> number of its latest request (older answers are dropped)
  let activeId = null;
  let origin = null; // the item whose similar items are shown (the back button returns there)

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  async function getJson(path, params) {
    const url = new URL(root + path, window.location.origin);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
    }
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null; // not JSON: reported below by status
    }
    if (!response.ok) {
      const detail = body && body.error ? body.error.message : response.statusText;
      throw new Error(`${response.status}: ${detail}`);
    }
    noteVersion(body && body.version);
    return body;
  }

  function noteVersion(version) {
    if (!version || !pageVersion || version === pageVersion) return;
    const notice = $("notice");
    notice.textContent = `Version ${version} is now served (this page opened on ${pageVersion}); ` +
      "reload to see its facts and metrics.";
    notice.hidden = false;
  }

  // Run fetcher for a list; only the latest request of a list may fill it.
  async function load(listId, fetcher, render) {
    const token = (tokens.get(listId) || 0) + 1;
    tokens.set(listId, token);
    const list = $(listId);
    list.setAttribute("aria-busy", "true");
    try {
      const body = await fetcher();
      if (tokens.get(listId) === token) render(body);
    } catch (error) {
      if (tokens.get(listId) === token) message(list, error.message, true);
    } finally {
      if (tokens.get(listId) === token) list.removeAttribute("aria-busy");
    }
  }

  function message(list, text, isError) {
    list.replaceChildren(el("li", isError ? "empty error" : "empty", text));
  }

  function number(value, digits) {
    return Number(value).toFixed(digits === undefined ? 3 : digits);
  }

  function part(label, value, className) {
    const span = el("span", className || "part");
    if (label) span.append(el("span", "label", label), document.createTextNode(" " + value));
    else span.textContent = value;
    return span;
  }

  function gauge(value, className) {
    const track = el("span", "gauge " + (className || ""));
    const fill = el("span", "fill");
    fill.style.width = `${Math.round(Math.max(0, Math.min(1, Number(value))) * 100)}%`;
    track.append(fill);
    track.setAttribute("aria-hidden", "true");
    return track;
  }

  // One clickable item: its title, id and the parts of its score; a click shows its similar items.
  function itemRow(item, parts, gauges) {
    const li = el("li");
    const button = el("button", "item");
    button.type = "button";
    button.dataset.itemId = String(item.item_id);
    if (String(item.item_id) === activeId) button.classList.add("active");
    button.append(el("span", "title", item.title || `item ${item.item_id}`));
    const meta = el("span", "meta");
    meta.append(el("span", "id", `#${item.item_id}`), ...parts);
    button.append(meta);
    if (gauges && gauges.length) {
      const row = el("span", "gauges");
      row.append(...gauges);
      button.append(row);
    }
    button.addEventListener("click", () => showSimilar(item, button));
    li.append(button);
    return li;
  }

  function fill(listId, rows, emptyText) {
    const list = $(listId);
    if (rows.length === 0) message(list, emptyText);
    else list.replaceChildren(...rows);
  }

  function day(seconds) {
    return seconds > 0 ? new Date(seconds * 1000).toISOString().slice(0, 10) : "no time";
  }

  function showUser(userId) {
    const user = encodeURIComponent(userId);
    load("history", () => getJson(`/v1/users/${user}/history`, { n: HISTORY_N }),
      (body) => {
        $("history-note").textContent = body.total > body.items.length
          ? `latest ${body.items.length} of ${body.total}` : `${body.total}`;
        const rows = body.items.map((item) => itemRow(item, [
          part("★", number(item.rating, 1), "part rating"),
          part("", day(item.timestamp), "part when"),
        ]));
        fill("history", rows, `User ${userId} has no interactions in this version.`);
      });
    load("recommendations",
      () => getJson(`/v1/users/${user}/recommendations`, { n: LIST_N }),
      (body) => {
        $("recs-note").textContent = body.source === "personal"
          ? "personal" : "popular (user unknown to the model)";
        const rows = body.items.map((item) => itemRow(item, [part("score", number(item.score))]));
        fill("recommendations", rows, "No recommendations.");
      });
  }

  function showSearch(query, userId) {
    load("semantic", () => getJson("/v1/search", { q: query, n: LIST_N }), (body) => {
      const rows = body.items.map((item) => itemRow(item, [part("query", number(item.query_score))],
        [gauge(item.query_score, "query")]));
      fill("semantic", rows, "Nothing matches.");
    });
    if (!userId) {
      tokens.set("personal", (tokens.get("personal") || 0) + 1);
      $("personal-note").textContent = "";
      message($("personal"), "Pick a user above to personalise this search.");
      return;
    }
    const personal = () => getJson("/v1/search", { q: query, user_id: userId, n: LIST_N });
    load("personal", personal, (body) => {
      $("personal-note").textContent = body.ranking === "personal"
        ? `for user ${userId}` : `user ${userId} unknown to the model: semantic order`;
      const rows = body.items.map((item) => itemRow(item, [
        part("score", number(item.score), "part total"),
        part("query", number(item.query_score)),
        part("cf", item.cf_score === null ? "–" : number(item.cf_score)),
      ], [gauge(item.query_score, "query"), gauge(item.cf_score || 0, "cf")]));
      fill("personal", rows, "Nothing matches that the user has not seen.");
    });
  }

  function markActive(itemId) {
    activeId = itemId;
    for (const button of document.querySelectorAll("button.item")) {
      button.classList.toggle("active", button.dataset.itemId === itemId);
    }
  }

  function showSimilar(item, button) {
    const itemId = String(item.item_id);
    markActive(itemId);
    if (!button.closest("#similar")) origin = button;
    $("similar-back").hidden = origin === null;
    $("similar-of").textContent = `Most like “${item.title || itemId}” (#${itemId})`;
    const similar = () => getJson(`/v1/items/${encodeURIComponent(itemId)}/similar`, { n: LIST_N });
    load("similar", similar, (body) => {
      const rows = body.items.map((other) => itemRow(other, [part("score", number(other.score))]));
      fill("similar", rows, "No similar items recorded for this item.");
    });
    $("similar-title").focus({ preventScroll: false });
  }

  function remember(userId, query) {
    const url = new URL(window.location.href);
    for (const [name, value] of [["user_id", userId], ["q", query]]) {
      if (value) url.searchParams.set(name, value);
      else url.searchParams.delete(name);
    }
    window.history.replaceState(null, "", url);
  }

  function current() {
    return { userId: $("user-id").value.trim(), query: $("query").value.trim() };
  }

  $("similar-back").addEventListener("click", () => {
    // The lists may have been redrawn since: then go to the same item where it is now.
    const marked = [...document.querySelectorAll("button.item.active")];
    const target = origin && origin.isConnected
      ? origin : marked.find((button) => !button.closest("#similar"));
    if (target) target.focus();
  });

  $("user-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const { userId, query } = current();
    if (!userId) return;
    remember(userId, query);
    showUser(userId);
    if (query) showSearch(query, userId);
  });

  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const { userId, query } = current();
    if (!query) return;
    remember(userId, query);
    showSearch(query, userId);
  });

  const start = current();
  if (start.userId) showUser(start.userId);
  if (start.query) showSearch(start.query, start.userId);
})();
