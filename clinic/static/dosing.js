// The dosing window (clinic.medications.dosing_views). No inline script: the CSP forbids it.
//
// The screen: typing in the filter fetches the list fragment (name starts or MRN, the
// patient search) from its first page and swaps it in place; every 45 seconds the page
// the nurse is on (the keyset cursor, ?after= or ?before= of the address) is fetched
// again with the filter as typed. The pager's links load the whole screen. The filter input itself is never replaced, so what was typed and
// the caret stay. Enter submits the filter form: one patient found opens their dose page.
// ArrowDown from the filter moves to the first patient of the list.
//
// The dose and injection forms: Enter on the date-of-birth check box records (a check box
// does not submit a form on Enter by itself), so the nurse confirms with Space and records
// with Enter, from the keyboard only.
(() => {
  "use strict";
  const REFRESH_MS = 45000;
  const TYPE_DELAY_MS = 250;

  function setupScreen() {
    const input = document.getElementById("dosing-filter");
    const list = document.getElementById("dosing-list");
    const status = document.getElementById("dosing-status");
    if (!input || !list) {
      return;
    }
    const CURSORS = ["after", "before"];
    let typed = null;
    let pending = null;

    // The list of the page shown (auto: the refresh keeps its cursor), or of the first
    // page (typing: the filter changed, its list starts again).
    function listUrl(auto) {
      const url = new URL(input.dataset.listUrl, window.location.href);
      url.searchParams.set("q", input.value.trim());
      url.searchParams.set("day", input.dataset.day);
      if (auto) {
        url.searchParams.set("auto", "1");
        const shown = new URL(window.location.href).searchParams;
        for (const name of CURSORS) {
          if (shown.has(name)) {
            url.searchParams.set(name, shown.get(name));
          }
        }
      }
      return url;
    }

    async function refresh(auto) {
      if (pending) {
        pending.abort();
      }
      const controller = new AbortController();
      pending = controller;
      try {
        const response = await fetch(listUrl(auto), {
          credentials: "same-origin",
          headers: { Accept: "text/html" },
          signal: controller.signal,
        });
        if (!response.ok || response.redirected) {
          return; // signed out or refused: the next navigation shows why
        }
        const html = await response.text();
        const focusedHref = document.activeElement && list.contains(document.activeElement)
          ? document.activeElement.getAttribute("href") : null;
        list.innerHTML = html;
        if (focusedHref) {
          const again = list.querySelector(`a[href="${CSS.escape(focusedHref)}"]`);
          if (again) {
            again.focus();
          }
        }
        const count = list.querySelector("[data-count]");
        if (status && count && !auto) {
          status.textContent = count.textContent;
        }
        const url = new URL(window.location.href);
        if (!auto) {
          CURSORS.forEach((name) => url.searchParams.delete(name));
        }
        if (input.value.trim()) {
          url.searchParams.set("q", input.value.trim());
        } else {
          url.searchParams.delete("q");
        }
        window.history.replaceState(null, "", url);
      } catch (error) {
        if (error.name !== "AbortError") {
          throw error;
        }
      } finally {
        if (pending === controller) {
          pending = null;
        }
      }
    }

    input.addEventListener("input", () => {
      window.clearTimeout(typed);
      typed = window.setTimeout(() => refresh(false), TYPE_DELAY_MS);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown") {
        const first = list.querySelector("a.dosing-select");
        if (first) {
          event.preventDefault();
          first.focus();
        }
      }
    });
    list.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowDown" && event.key !== "ArrowUp") {
        return;
      }
      const links = Array.from(list.querySelectorAll("a.dosing-select"));
      const at = links.indexOf(document.activeElement);
      if (at < 0) {
        return;
      }
      event.preventDefault();
      if (event.key === "ArrowUp" && at === 0) {
        input.focus();
        return;
      }
      const next = links[at + (event.key === "ArrowDown" ? 1 : -1)];
      if (next) {
        next.focus();
      }
    });
    window.setInterval(() => refresh(true), REFRESH_MS);
  }

  function setupEnterSubmits() {
    document.querySelectorAll("form[data-enter-submits]").forEach((form) => {
      form.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && event.target.matches('input[type="checkbox"]')) {
          event.preventDefault();
          form.requestSubmit();
        }
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupScreen();
    setupEnterSubmits();
  });
})();
