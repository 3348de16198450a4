// plumb's web UI: live status over server-sent events, and the sync,
// rollback, resume and refresh actions through the JSON API. Pages are
// complete without this script; it only keeps them current and adds actions.
// The token lives in an HttpOnly cookie this script never sees; every write
// sends X-Requested-With, which the server requires of cookie-authenticated
// writes.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  let noticeTimer = null;
  function notice(text, bad) {
    const n = $("#notice");
    if (!n) return;
    n.textContent = text;
    n.classList.toggle("bad", !!bad);
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, bad ? 12000 : 5000);
  }

  async function api(method, path, body) {
    const r = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Requested-With": "plumb", "Accept": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    try { data = await r.json(); } catch (_) { /* not JSON */ }
    if (!r.ok) {
      if (r.status === 401) throw new Error("your session has ended; sign in again");
      throw new Error((data && data.error) || (r.status + " " + r.statusText));
    }
    return data;
  }

  function setBadge(node, kind, value) {
    if (!node || !value) return;
    node.textContent = value;
    node.className = node.className.replace(new RegExp("\\b" + kind + "-\\S+", "g"), "").trim() + " " + kind + "-" + value;
  }

  const PHASES = { Pending: "pending", Idle: "", Syncing: "syncing", Failed: "failed" };

  // ---- live status ---------------------------------------------------------

  function connect(onStatus) {
    const state = $("#live-state");
    if (!window.EventSource) return;
    const es = new EventSource("/api/v1/events");
    es.addEventListener("open", () => { if (state) state.textContent = "live"; });
    es.addEventListener("error", () => {
      if (!state) return;
      state.textContent = es.readyState === EventSource.CLOSED ? "live updates stopped: reload the page" : "reconnecting…";
    });
    es.addEventListener("status", (ev) => {
      let s;
      try { s = JSON.parse(ev.data); } catch (_) { return; }
      onStatus(s);
    });
  }

  // ---- the list page -------------------------------------------------------

  function listPage() {
    const rows = new Map($$("#apps tbody tr").map((tr) => [tr.dataset.key, tr]));
    const search = $("#search");
    document.addEventListener("keydown", (e) => {
      if (e.key === "/" && search && document.activeElement !== search && !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName)) {
        e.preventDefault();
        search.focus();
        search.select();
      }
    });
    // Choosing a filter applies it at once.
    for (const id of ["#filter-sync", "#filter-health", "#filter-per"]) {
      const s = $(id);
      if (s) s.addEventListener("change", () => s.form.submit());
    }
    connect((s) => {
      const tr = rows.get(s.key);
      if (!tr) return;
      const before = $("[data-field=sync]", tr).textContent;
      setBadge($("[data-field=sync]", tr), "sync", s.sync);
      setBadge($("[data-field=health]", tr), "health", s.health);
      $("[data-field=phase]", tr).textContent = PHASES[s.phase] || "";
      if (s.revision) $("[data-field=revision]", tr).textContent = s.revision.split(",").map((r) => r.slice(0, 7)).join(",");
      if (before !== s.sync) {
        const state = $("#live-state");
        if (state) state.textContent = s.name + " is " + s.sync;
      }
    });
  }

  // ---- one Application -----------------------------------------------------

  function appPage(root) {
    const key = root.dataset.key;
    const href = root.dataset.href;
    const diffBox = $("#diff");

    async function loadDiff() {
      diffBox.setAttribute("aria-busy", "true");
      try {
        const r = await fetch(diffBox.dataset.src, { credentials: "same-origin" });
        diffBox.innerHTML = await r.text();
      } catch (e) {
        diffBox.textContent = "The diff could not be loaded: " + e.message;
      }
      diffBox.setAttribute("aria-busy", "false");
    }

    async function reloadLive() {
      const focused = document.activeElement && document.activeElement.closest("#live") ? document.activeElement : null;
      const focusSel = focused && focused.dataset.id ? "button.rollback[data-id=\"" + focused.dataset.id + "\"]" : null;
      try {
        const r = await fetch(href + "/live", { credentials: "same-origin" });
        if (!r.ok && r.status !== 401) return;
        $("#live").innerHTML = await r.text();
      } catch (_) { return; }
      const resume = $("#btn-resume");
      if (resume) resume.hidden = !$("#app-suspended");
      if (focusSel) { const f = $(focusSel); if (f) f.focus(); }
    }

    let timer = null;
    let lastSync = ($("#app-sync") || {}).textContent;
    let lastRevision = ($("#app-revision") || {}).title;
    connect((s) => {
      if (s.key !== key) return;
      setBadge($("#app-sync"), "sync", s.sync);
      setBadge($("#app-health"), "health", s.health);
      const phase = $("#app-phase");
      if (phase) phase.textContent = PHASES[s.phase] || "";
      clearTimeout(timer);
      timer = setTimeout(() => {
        reloadLive();
        if (s.sync !== lastSync || (s.revision || "") !== lastRevision) loadDiff();
        lastSync = s.sync;
        lastRevision = s.revision || "";
      }, 250);
    });
    loadDiff();
    const b = (id, f) => { const n = $(id); if (n) n.addEventListener("click", f); };
    b("#btn-diff", loadDiff);
    b("#btn-refresh", async () => {
      try { await api("POST", "/api/v1/applications/" + encodeURIComponent(key) + "/refresh"); notice("Refreshing from Git…"); }
      catch (e) { notice("Refresh failed: " + e.message, true); }
    });
    b("#btn-resume", async () => {
      try { await api("POST", "/api/v1/applications/" + encodeURIComponent(key) + "/resume"); notice("Automated sync resumed."); reloadLive(); }
      catch (e) { notice("Resume failed: " + e.message, true); }
    });

    // Sync: a dry run first, then the real thing.
    const dialog = $("#sync-dialog");
    const preview = $("#sync-preview");
    const confirm = $("#sync-confirm");
    const prune = $("#sync-prune");
    async function dryRun() {
      confirm.disabled = true;
      preview.replaceChildren(el("p", { class: "muted" }, "Running a dry run…"));
      try {
        const r = await api("POST", "/api/v1/applications/" + encodeURIComponent(key) + "/sync", { dryRun: true, prune: prune.checked });
        preview.replaceChildren(report(r, true));
        confirm.disabled = false;
      } catch (e) {
        preview.replaceChildren(el("p", { class: "error" }, "Dry run failed: " + e.message));
      }
    }
    b("#btn-sync", () => { dialog.showModal(); dryRun(); });
    if (prune) prune.addEventListener("change", dryRun);
    if (confirm) confirm.addEventListener("click", async () => {
      confirm.disabled = true;
      preview.replaceChildren(el("p", { class: "muted" }, "Syncing…"));
      try {
        const r = await api("POST", "/api/v1/applications/" + encodeURIComponent(key) + "/sync", { prune: prune.checked });
        dialog.close();
        notice(r.succeeded ? "Synced " + short(r.revision) + ": " + countsText(r.counts) : "Sync finished with failures: " + countsText(r.counts), !r.succeeded);
        reloadLive();
        loadDiff();
      } catch (e) {
        preview.replaceChildren(el("p", { class: "error" }, "Sync failed: " + e.message));
      }
    });

    // Rollback: confirm first.
    const rb = $("#rollback-dialog");
    let target = null;
    document.addEventListener("click", (e) => {
      const btn = e.target.closest && e.target.closest("button.rollback");
      if (!btn) return;
      target = btn.dataset.revision;
      const what = $("#rollback-what");
      what.replaceChildren("Sync commit ", el("code", {}, btn.dataset.short), " (#" + btn.dataset.id + ")",
        btn.dataset.message ? ": “" + btn.dataset.message + "”" : "", btn.dataset.author ? " by " + btn.dataset.author : "", ".");
      rb.showModal();
    });
    b("#rollback-confirm", async () => {
      const btn = $("#rollback-confirm");
      btn.disabled = true;
      try {
        const r = await api("POST", "/api/v1/applications/" + encodeURIComponent(key) + "/rollback", { revision: target });
        rb.close();
        notice((r.succeeded ? "Rolled back to " : "Rollback finished with failures at ") + short(r.revision), !r.succeeded);
        reloadLive();
        loadDiff();
      } catch (e) {
        rb.close();
        notice("Rollback failed: " + e.message, true);
      } finally {
        btn.disabled = false;
      }
    });
  }

  function short(rev) { return (rev || "").split(",").map((r) => r.slice(0, 7)).join(","); }

  function countsText(c) {
    if (!c) return "";
    const parts = [];
    for (const k of ["created", "configured", "pruned", "skipped", "failed"]) if (c[k]) parts.push(c[k] + " " + k);
    return parts.length ? parts.join(", ") : "no changes";
  }

  function report(r, dry) {
    const box = el("div", {});
    const changes = (r.results || []).filter((x) => x.action !== "unchanged");
    box.append(el("p", { id: "sync-summary" }, (dry ? "A sync of " : "Synced ") + short(r.revision) + (dry ? " would: " : ": ") + countsText(r.counts) + "."));
    if (changes.length) {
      const tbody = el("tbody", {});
      for (const x of changes) {
        const name = x.kind + "/" + (x.namespace ? x.namespace + "/" : "") + x.name;
        tbody.append(el("tr", {}, el("td", {}, el("code", {}, name)), el("td", {}, x.action), el("td", {}, x.message || "")));
      }
      box.append(el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Object"), el("th", {}, "Action"), el("th", {}, "Detail"))), tbody));
    } else {
      box.append(el("p", { class: "in-sync" }, "Nothing to change: the cluster already equals Git."));
    }
    return box;
  }

  document.addEventListener("DOMContentLoaded", () => {
    if ($("#list-page")) listPage();
    const app = $("#app");
    if (app) appPage(app);
  });
})();
