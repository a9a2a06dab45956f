"use strict";
// Chat page: send with fetch, read the server-sent events, stop with an AbortController.
(() => {
  const form = document.getElementById("composer");
  const box = document.getElementById("message");
  const list = document.getElementById("messages");
  const errorBox = document.getElementById("chat-error");
  const sendButton = form.querySelector('[data-action="send"]');
  const stopButton = form.querySelector('[data-action="stop"]');
  const modelPicker = document.getElementById("model-picker");
  const credentialPicker = form.querySelector('select[name="credential"]');
  const csrf = form.querySelector('input[name="csrfmiddlewaretoken"]').value;
  const draftKey = () => "byok-draft:" + location.pathname;
  let conversationUrl = form.dataset.regenerateUrl ? form.dataset.regenerateUrl.replace(/regenerate\/$/, "") : "";
  let controller = null;

  const scrollDown = () => { list.scrollTop = list.scrollHeight; };

  function showError(text, link) {
    errorBox.textContent = text;
    if (link) {
      const a = document.createElement("a");
      a.href = link;
      a.textContent = gettext("Open the API keys page");
      errorBox.append(" ", a);
    }
    errorBox.hidden = !text;
  }

  function addCopyButtons(root) {
    root.querySelectorAll("pre").forEach((pre) => {
      if (pre.querySelector(".copy")) return;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy";
      button.textContent = gettext("Copy");
      button.addEventListener("click", async () => {
        await navigator.clipboard.writeText(pre.querySelector("code")?.innerText ?? pre.innerText);
        button.textContent = gettext("Copied");
        setTimeout(() => { button.textContent = gettext("Copy"); }, 1500);
      });
      pre.appendChild(button);
    });
  }

  function bubble(role, text) {
    document.getElementById("welcome")?.remove();
    const article = document.createElement("article");
    article.className = "msg msg-" + role;
    article.dataset.role = role;
    const body = document.createElement("div");
    body.className = role === "user" ? "bubble user-text" : "bubble markdown";
    body.textContent = text;
    article.appendChild(body);
    list.appendChild(article);
    scrollDown();
    return article;
  }

  function note(article, className, text, before) {
    const p = document.createElement("p");
    p.className = "msg-note " + className;
    p.textContent = text;
    if (before) article.prepend(p); else article.appendChild(p);
    return p;
  }

  function setState(article, state, text) {
    article.dataset.state = state;
    article.querySelector(".msg-note:not(.note-trimmed)")?.remove();
    const words = text || (state === "stopped" ? gettext("Stopped.") : "");
    if (words) note(article, "note-" + state, words);
  }

  function actionButton(article, action, label) {
    const bar = document.createElement("div");
    bar.className = "msg-actions";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link small";
    button.dataset.action = action;
    button.textContent = label;
    bar.appendChild(button);
    article.appendChild(bar);
  }

  function refreshActions() {
    list.querySelectorAll(".msg-actions").forEach((bar) => bar.remove());
    if (!conversationUrl) return;
    const users = list.querySelectorAll('[data-role="user"]');
    const last = list.lastElementChild;
    if (users.length) actionButton(users[users.length - 1], "edit", gettext("Edit"));
    if (last?.dataset.role === "assistant") actionButton(last, "regenerate", "↻ " + gettext("Regenerate"));
  }

  function busy(on) {
    sendButton.hidden = on;
    stopButton.hidden = !on;
    box.readOnly = on;
    list.querySelectorAll(".msg-actions button").forEach((b) => { b.disabled = on; });
  }

  function started(article, data) {
    article.dataset.messageId = data.assistant_message;
    if (data.trimmed) {
      note(article, "note-trimmed", interpolate(ngettext(
        "%s earlier message left out to fit the model’s context window.",
        "%s earlier messages left out to fit the model’s context window.", data.trimmed), [data.trimmed]), true);
    }
    localStorage.removeItem(draftKey());
    conversationUrl = data.url;
    if (location.pathname !== data.url) {
      localStorage.removeItem("byok-draft:" + location.pathname);
      history.replaceState(null, "", data.url);
      form.action = data.url + "send/";
      const link = document.createElement("a");
      link.href = data.url;
      link.className = "conversation-link current";
      link.textContent = data.title;
      const sidebar = document.querySelector(".conversation-list");
      sidebar?.querySelector(".empty-note")?.remove();
      let today = sidebar?.querySelector(".sidebar-group");
      if (sidebar && today?.textContent !== gettext("Today")) {
        today = document.createElement("h3");
        today.className = "sidebar-group";
        today.textContent = gettext("Today");
        sidebar.prepend(today);
      }
      today?.after(link);
      form.querySelector(".prompt-settings")?.remove(); // a system prompt typed here applied to the new chat only
      const template = document.getElementById("conversation-head");
      if (template) {
        const head = template.content.cloneNode(true);
        head.querySelector('input[name="title"]').value = data.title;
        template.closest(".chat-head").replaceChildren(head);
      }
    }
  }

  function finished(article, data) {
    const body = article.querySelector(".bubble");
    body.innerHTML = data.html; // sanitised on the server with nh3
    addCopyButtons(body);
    setState(article, data.state, data.error);
    if (data.redirect) {
      const link = document.createElement("a");
      link.href = data.redirect;
      link.textContent = gettext("Open the API keys page");
      article.querySelector(".msg-note:not(.note-trimmed)")?.append(" ", link);
    }
  }

  async function readEvents(response, article, fromBox) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const body = article.querySelector(".bubble");
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const events = buffer.split("\n\n");
      buffer = events.pop();
      for (const raw of events) {
        let name = "message";
        let data = "";
        for (const line of raw.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        const payload = JSON.parse(data);
        if (name === "message") { body.textContent += payload; scrollDown(); }
        else if (name === "start") { started(article, payload); if (fromBox) { box.value = ""; grow(); } }
        else if (name === "done") finished(article, payload);
      }
    }
  }

  // POST fields to url and stream the reply into a new assistant bubble; `undo` runs if the server refuses.
  async function stream(url, fields, undo, fromBox = false) {
    showError("");
    fields.set("csrfmiddlewaretoken", csrf);
    if (modelPicker) fields.set("model", modelPicker.value);
    if (credentialPicker) fields.set("credential", credentialPicker.value);
    const article = bubble("assistant", "");
    article.dataset.state = "streaming";
    controller = new AbortController();
    busy(true);
    try {
      const response = await fetch(url, {
        method: "POST", body: fields, headers: { Accept: "text/event-stream" },
        signal: controller.signal, credentials: "same-origin",
      });
      if (!response.ok) {
        article.remove();
        undo();
        const data = await response.json().catch(() => ({}));
        if (data.redirect && !list.querySelector(".msg")) { location.assign(data.redirect); return; }
        showError(data.error || interpolate(gettext("The server could not take your message (%s). Nothing was lost."), [response.status]),
          data.redirect);
        return;
      }
      await readEvents(response, article, fromBox);
      if (article.dataset.state === "streaming") setState(article, "incomplete", gettext("The connection ended before the reply was finished."));
    } catch (error) {
      if (error.name === "AbortError") setState(article, "stopped", "");
      else setState(article, "error", gettext("The connection to the server was lost. Reload to see what was saved."));
    } finally {
      controller = null;
      busy(false);
      refreshActions();
      box.focus();
    }
  }

  function send() {
    const text = box.value.trim();
    if (!text || controller) return;
    const userArticle = bubble("user", text);
    stream(form.action, new FormData(form), () => userArticle.remove(), true);
  }

  function regenerate(button) {
    const old = button.closest("article");
    old.hidden = true;
    stream(conversationUrl + "regenerate/", new FormData(), () => { old.hidden = false; })
      .then(() => { if (old.hidden) old.remove(); });
  }

  function edit(button) {
    const article = button.closest("article");
    const body = article.querySelector(".bubble");
    const original = body.textContent;
    const editor = document.createElement("form");
    editor.className = "edit-form";
    editor.innerHTML = '<textarea name="message" rows="3"></textarea><div class="edit-bar">' +
      '<button type="submit" class="button small primary"></button>' +
      '<button type="button" class="button small" data-action="cancel-edit"></button></div>';
    editor.querySelector("[type=submit]").textContent = gettext("Save & send");
    editor.querySelector("[data-action=cancel-edit]").textContent = gettext("Cancel");
    editor.querySelector("textarea").value = original;
    body.hidden = true;
    article.querySelector(".msg-actions")?.remove();
    article.appendChild(editor);
    editor.querySelector("textarea").focus();
    editor.querySelector('[data-action="cancel-edit"]').addEventListener("click", () => {
      editor.remove(); body.hidden = false; refreshActions();
    });
    editor.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = editor.querySelector("textarea").value.trim();
      if (!text) return;
      const later = [];
      for (let node = article.nextElementSibling; node; node = node.nextElementSibling) later.push(node);
      later.forEach((node) => { node.hidden = true; });
      editor.remove();
      body.textContent = text;
      body.hidden = false;
      const fields = new FormData();
      fields.set("message", text);
      stream(conversationUrl + "edit/", fields, () => {
        body.textContent = original;
        later.forEach((node) => { node.hidden = false; });
      }).then(() => later.forEach((node) => { if (node.hidden) node.remove(); }));
    });
  }

  async function loadModels() {
    if (!modelPicker) return;
    const params = new URLSearchParams();
    if (credentialPicker) params.set("credential", credentialPicker.value);
    try {
      const response = await fetch(form.dataset.modelsUrl + "?" + params, { credentials: "same-origin" });
      const data = await response.json();
      // Suggestions only: any typed model id is sent as is.
      modelPicker.list.replaceChildren(...data.models.map((name) => new Option(name, name)));
      modelPicker.title = data.error || "";
    } catch {
      modelPicker.title = gettext("Could not load the model list; type a model id.");
    }
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  stopButton.addEventListener("click", () => controller?.abort());
  list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || controller) return;
    if (button.dataset.action === "regenerate") regenerate(button);
    if (button.dataset.action === "edit") edit(button);
  });
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
  });
  const grow = () => { box.style.height = "auto"; box.style.height = Math.min(box.scrollHeight, 224) + "px"; };
  box.addEventListener("input", () => { localStorage.setItem(draftKey(), box.value); grow(); });
  credentialPicker?.addEventListener("change", loadModels);
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
  box.value = localStorage.getItem(draftKey()) || box.value;
  grow();
  addCopyButtons(list);
  loadModels();
  scrollDown();
})();
