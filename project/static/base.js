"use strict";
// The language switcher applies on change; its button stays for people without JavaScript.
document.querySelectorAll("[data-language-switcher]").forEach((form) => {
  form.querySelector("[data-language-apply]").hidden = true;
  form.querySelector("select").addEventListener("change", () => form.submit());
});
