"use strict";
// The language switcher applies on change; its button stays for people without JavaScript.
document.querySelectorAll("[data-language-switcher]").forEach((form) => {
  form.querySelector("[data-language-apply]").hidden = true;
  form.querySelector("select").addEventListener("change", () => form.submit());
});

// The browser's time zone, for times before the person picks one on /settings/profile/.
(() => {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (/^[A-Za-z0-9_+\-\/]+$/.test(zone || "") && !document.cookie.split("; ").includes("tz=" + zone)) {
    document.cookie = "tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
  }
})();
