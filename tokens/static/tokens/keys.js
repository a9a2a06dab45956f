// Show only the fields of the chosen credential kind; without JavaScript every field shows.
const fieldOf = (input) => input.closest(".field") || input;

function showKindFields(form) {
  const kind = form.querySelector("[data-kind-select]").value;
  const preset = form.querySelector("[data-preset]");
  for (const input of form.querySelectorAll("[data-kinds]")) {
    fieldOf(input).hidden = !input.dataset.kinds.split(" ").includes(kind);
  }
  const tenant = form.querySelector("[data-tenant]");
  if (tenant && preset && !fieldOf(preset).hidden) fieldOf(tenant).hidden = preset.value !== "azure";
}

// Azure OpenAI behind Microsoft Entra ID: token URL and scope follow from the tenant ID.
function fillAzure(form) {
  const preset = form.querySelector("[data-preset]");
  const tenant = form.querySelector("[data-tenant]").value.trim();
  if (!preset || preset.value !== "azure") return;
  form.elements.token_url.value = tenant ? `https://login.microsoftonline.com/${encodeURIComponent(tenant)}/oauth2/v2.0/token` : "";
  form.elements.scope.value = "https://cognitiveservices.azure.com/.default";
}

function showExpiryDate(form) {
  const date = form.querySelector("[data-expiry-date]");
  if (date) fieldOf(date).hidden = form.elements.expiry.value !== "date";
}

for (const form of document.querySelectorAll("form[data-credential-form], form[data-expiry-form]")) {
  const update = (event) => {
    if (form.querySelector("[data-kind-select]")) showKindFields(form);
    if (event && (event.target.matches("[data-tenant]") || event.target.matches("[data-preset]"))) fillAzure(form);
    showExpiryDate(form);
  };
  form.addEventListener("change", update);
  form.addEventListener("input", update);
  update();
}
