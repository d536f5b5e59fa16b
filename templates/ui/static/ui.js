// Small enhancements only: the UI works without this file.
// "Invert selection" buttons flip every checkbox of their form; selected rows are highlighted.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("[data-invert]")) {
    button.hidden = false;
    button.addEventListener("click", () => {
      const form = button.closest("form");
      for (const box of form.querySelectorAll('input[type="checkbox"][name="key"], input[type="checkbox"][name="agent"]')) {
        box.checked = !box.checked;
      }
    });
  }
});
