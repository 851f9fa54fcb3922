// civitai-mirror serve: optional enhancements; every page works without this file.
// Talks only to this server (the page's Content-Security-Policy forbids anything else).
"use strict";
(function () {
  const body = document.body;
  const pick = document.getElementById("blur");
  const stored = window.localStorage.getItem("blurAbove");
  let above = stored !== null ? Number(stored) : Number(body.dataset.blurAbove);

  function applyBlur(root) {
    root.querySelectorAll("[data-level]").forEach(function (el) {
      if (el.tagName === "IMG") return;
      if (el.classList.contains("revealed")) return;
      el.classList.toggle("blurred", Number(el.dataset.level) > above);
    });
  }

  if (pick) {
    pick.value = String(above);
    pick.addEventListener("change", function () {
      above = Number(pick.value);
      window.localStorage.setItem("blurAbove", String(above));
      document.querySelectorAll(".revealed").forEach(function (el) { el.classList.remove("revealed"); });
      applyBlur(document);
    });
  }
  applyBlur(document);

  // The first click on a blurred image reveals it; the next one follows the link.
  document.addEventListener("click", function (event) {
    const target = event.target instanceof Element ? event.target.closest(".blurred") : null;
    if (!target || event.target.closest("input, button, label")) return;
    event.preventDefault();
    target.classList.remove("blurred");
    target.classList.add("revealed");
  });

  // Search as you type: fetch the same page the form would load and swap its results in.
  const form = document.getElementById("search");
  if (!form) return;
  let timer = null;
  let generation = 0;
  function update() {
    const params = new URLSearchParams(new FormData(form));
    for (const [k, v] of Array.from(params.entries())) { if (v === "") params.delete(k); }
    const url = "/?" + params.toString();
    const mine = ++generation;
    fetch(url, { headers: { "Accept": "text/html" } }).then(function (r) {
      return r.ok ? r.text() : Promise.reject(r.status);
    }).then(function (text) {
      if (mine !== generation) return;  // a newer keystroke already asked again
      const doc = new DOMParser().parseFromString(text, "text/html");
      ["grid", "pager", "count"].forEach(function (id) {
        const fresh = doc.getElementById(id), old = document.getElementById(id);
        if (fresh && old) old.innerHTML = fresh.innerHTML;
      });
      const back = document.querySelector('#curate input[name="back"]');
      if (back) back.value = url;
      applyBlur(document);
      window.history.replaceState(null, "", url);
      body.dataset.updated = String(mine);
    }).catch(function () { /* leave the results as they are; the form still submits */ });
  }
  form.addEventListener("input", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(update, 250);
  });
  form.addEventListener("submit", function (event) { event.preventDefault(); update(); });
})();
