"use strict";
// The language switcher applies on change; its button stays for people without JavaScript.
document.querySelectorAll("[data-language-switcher]").forEach((form) => {
  form.querySelector("[data-language-apply]").hidden = true;
  form.querySelector("select").addEventListener("change", () => form.submit());
});

// Every page: ask before destructive actions; forms opt in with data-confirm (the question, translated).
document.addEventListener("submit", (event) => {
  const message = event.target.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
});

// The browser's time zone, for times before the person picks one on /settings/profile/.
(() => {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (/^[A-Za-z0-9_+\-\/]+$/.test(zone || "") && !document.cookie.split("; ").includes("tz=" + zone)) {
    document.cookie = "tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
  }
})();

// Every page: remember the colour theme without a reload; forget chat drafts on log-out.
(() => {
  document.querySelector("[data-theme-toggle]")?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const button = form.querySelector("button[name=theme]");
    const fields = new FormData(form);
    fields.set("theme", button.value);
    const response = await fetch(form.action, {
      method: "POST", body: fields, credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (!response.ok) return;
    const { theme, next } = await response.json();
    if (theme === "system") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    const label = button.dataset["label" + theme[0].toUpperCase() + theme.slice(1)] || theme;
    button.value = next;
    button.dataset.themeCurrent = theme;
    button.title = label;
    button.querySelector(".theme-label").textContent = label;
  });

  // The next person on a shared browser must not find someone's unsent text.
  document.querySelectorAll("[data-logout]").forEach((form) => form.addEventListener("submit", () => {
    Object.keys(localStorage).filter((key) => key.startsWith("byok-draft:")).forEach((key) => localStorage.removeItem(key));
  }));
})();
