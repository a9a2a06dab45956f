// Copy the new key with one click; ask before revoking a key that programs may be using.
"use strict";
document.querySelectorAll("[data-action=copy]").forEach((button) => {
  button.addEventListener("click", async () => {
    const key = document.querySelector("[data-new-api-key]");
    try {
      await navigator.clipboard.writeText(key.textContent.trim());
      button.textContent = button.dataset.copied;
    } catch (error) {
      window.getSelection().selectAllChildren(key);
    }
  });
});
// The date field matters only when "On a date…" is chosen; without JavaScript it always shows.
const form = document.querySelector("form[data-api-key-form]");
if (form) {
  const date = form.querySelector("[data-expiry-date]");
  const update = () => { date.closest(".field").hidden = form.elements.expiry.value !== "date"; };
  form.elements.expiry.addEventListener("change", update);
  update();
}
