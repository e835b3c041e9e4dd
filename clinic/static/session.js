// The session clock (issue 9, "nothing typed is lost"). No inline script: the CSP
// forbids it; the page gives its numbers as data-session-* attributes on <body>.
//
// - Typing in a form counts as activity: at most one keep-alive POST every
//   data-session-keep-alive seconds resets the server's idle clock (never its absolute
//   limit) and tells us how long the session has left.
// - data-session-warn seconds before the end, a dialog (role="alertdialog") counts down
//   and offers "Stay signed in"; its button gets the keyboard focus.
// - At the end, the page is replaced by the sign-in page, so no patient data stays on
//   the screen.
(() => {
  "use strict";
  const body = document.body;
  if (!body || !body.dataset.sessionLeft) {
    return;
  }
  const warnSeconds = Number(body.dataset.sessionWarn);
  const keepAliveEvery = Number(body.dataset.sessionKeepAlive) * 1000;
  const keepAliveUrl = body.dataset.sessionKeepAliveUrl;
  const loginUrl = body.dataset.sessionLoginUrl;
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const dialog = document.getElementById("session-warning");
  const countdown = document.getElementById("session-countdown");
  const announce = document.getElementById("session-announce");
  const stayButton = document.getElementById("session-stay");
  // One second of grace: the server's clock started a little before ours.
  let deadline = Date.now() + (Number(body.dataset.sessionLeft) + 1) * 1000;
  // Tabs share the deadline (a timestamp, nothing else): activity in one tab keeps the
  // others from signing out while the server's session is still alive.
  const SHARED = "clinic.session.deadline";
  let lastKeepAlive = Date.now();
  let focusBefore = null;
  let ended = false;

  function share() {
    try {
      const stored = Number(window.localStorage.getItem(SHARED) || 0);
      if (stored > deadline) {
        deadline = stored;
      } else {
        window.localStorage.setItem(SHARED, String(deadline));
      }
    } catch (error) {
      // Storage blocked: each tab keeps its own clock.
    }
  }

  function signedOut() {
    if (ended) {
      return;
    }
    ended = true;
    const here = window.location.pathname + window.location.search;
    // replace(): "Back" does not bring the patient's page back either.
    window.location.replace(loginUrl + "?next=" + encodeURIComponent(here));
  }

  function keepAlive() {
    lastKeepAlive = Date.now();
    return fetch(keepAliveUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {"X-CSRFToken": csrfMeta ? csrfMeta.content : "", "Accept": "application/json"},
    }).then((response) => {
      if (!response.ok) {
        // 401: the server already ended the session.
        if (response.status === 401) {
          signedOut();
        }
        return;
      }
      return response.json().then((answer) => {
        deadline = Date.now() + (Number(answer.seconds_left) + 1) * 1000;
        share();
        if (Math.ceil((deadline - Date.now()) / 1000) > warnSeconds) {
          hideWarning();
        }
      });
    }).catch(() => {});
  }

  function showWarning() {
    if (!dialog.hidden) {
      return;
    }
    focusBefore = document.activeElement;
    dialog.hidden = false;
    announce.textContent = "You will be signed out soon because of inactivity.";
    stayButton.focus();
  }

  function hideWarning() {
    if (dialog.hidden) {
      return;
    }
    dialog.hidden = true;
    announce.textContent = "";
    if (focusBefore && document.body.contains(focusBefore)) {
      focusBefore.focus();
    }
    focusBefore = null;
  }

  function describe(seconds) {
    const minutes = Math.floor(seconds / 60);
    const rest = seconds % 60;
    const parts = [];
    if (minutes) {
      parts.push(minutes + (minutes === 1 ? " minute" : " minutes"));
    }
    if (rest || !minutes) {
      parts.push(rest + (rest === 1 ? " second" : " seconds"));
    }
    return parts.join(" ");
  }

  function tick() {
    share();
    const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
    if (left <= 0) {
      signedOut();
      return;
    }
    if (left <= warnSeconds) {
      countdown.textContent = describe(left);
      showWarning();
    } else {
      hideWarning();
    }
  }

  function activity(event) {
    if (!event.target.closest || !event.target.closest("form")) {
      return;
    }
    if (event.target.closest("#session-warning")) {
      return;
    }
    if (Date.now() - lastKeepAlive >= keepAliveEvery) {
      keepAlive();
    }
  }

  stayButton.addEventListener("click", () => {
    keepAlive();
  });
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      keepAlive();
    }
  });
  document.addEventListener("input", activity, true);
  document.addEventListener("change", activity, true);
  window.setInterval(tick, 500);
  tick();
})();
