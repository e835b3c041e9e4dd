// After a failed submit, move the keyboard focus to the first field with an error (or,
// when the error concerns no field, to the form's error summary), so keyboard and
// screen-reader users land where the problem is (WCAG 2.2 3.3.1, 2.4.3). No inline
// script: the CSP forbids it.
document.addEventListener("DOMContentLoaded", () => {
  "use strict";
  const main = document.getElementById("main");
  if (!main) {
    return;
  }
  const field = main.querySelector('form [aria-invalid="true"]');
  if (field) {
    field.focus();
    return;
  }
  const summary = main.querySelector("[data-error-summary]");
  if (summary) {
    summary.focus();
  }
});
