"use strict";
// Chat page: send with fetch, read the server-sent events, stop with an AbortController.
(() => {
  const form = document.getElementById("composer");
  const box = document.getElementById("message");
  const list = document.getElementById("messages");
  const errorBox = document.getElementById("chat-error");
  const sendButton = form.querySelector('[data-action="send"]');
  const stopButton = form.querySelector('[data-action="stop"]');
  const draftKey = () => "byok-draft:" + form.action;
  let controller = null;

  const scrollDown = () => { list.scrollTop = list.scrollHeight; };
  const showError = (text) => { errorBox.textContent = text; errorBox.hidden = !text; };

  function addCopyButtons(root) {
    root.querySelectorAll("pre").forEach((pre) => {
      if (pre.querySelector(".copy")) return;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy";
      button.textContent = "Copy";
      button.addEventListener("click", async () => {
        await navigator.clipboard.writeText(pre.querySelector("code")?.innerText ?? pre.innerText);
        button.textContent = "Copied";
        setTimeout(() => { button.textContent = "Copy"; }, 1500);
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

  function setNote(article, state, text) {
    article.dataset.state = state;
    article.querySelector(".msg-note")?.remove();
    const words = text || (state === "stopped" ? "Stopped." : "");
    if (!words) return;
    const note = document.createElement("p");
    note.className = "msg-note note-" + state;
    note.textContent = words;
    article.appendChild(note);
  }

  function busy(on) {
    sendButton.hidden = on;
    stopButton.hidden = !on;
    box.readOnly = on;
  }

  function started(data) {
    localStorage.removeItem(draftKey());
    box.value = "";
    if (location.pathname !== data.url) {
      history.replaceState(null, "", data.url);
      form.action = data.url + "send/";
      const link = document.createElement("a");
      link.href = data.url;
      link.className = "conversation-link current";
      link.textContent = data.title;
      document.querySelector(".conversation-list")?.prepend(link);
    }
  }

  function finished(article, data) {
    const body = article.querySelector(".bubble");
    body.innerHTML = data.html; // sanitised on the server with nh3
    addCopyButtons(body);
    setNote(article, data.state, data.error);
    if (data.redirect) {
      const link = document.createElement("a");
      link.href = data.redirect;
      link.textContent = "Open the API keys page";
      article.querySelector(".msg-note")?.append(" ", link);
    }
  }

  async function readEvents(response, article) {
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
        else if (name === "start") { article.dataset.messageId = payload.assistant_message; started(payload); }
        else if (name === "done") finished(article, payload);
      }
    }
  }

  async function send() {
    const text = box.value.trim();
    if (!text || controller) return;
    showError("");
    const fields = new FormData(form);
    const userArticle = bubble("user", text);
    const article = bubble("assistant", "");
    article.dataset.state = "streaming";
    controller = new AbortController();
    busy(true);
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: fields,
        headers: { Accept: "text/event-stream" },
        signal: controller.signal,
        credentials: "same-origin",
      });
      if (!response.ok) {
        userArticle.remove();
        article.remove();
        const data = await response.json().catch(() => ({}));
        showError(data.error || "The server could not take your message (" + response.status + "). It is still in the box.");
        if (data.redirect && response.status === 409 && !document.querySelector(".msg")) location.assign(data.redirect);
        return;
      }
      await readEvents(response, article);
      if (article.dataset.state === "streaming") setNote(article, "incomplete", "The connection ended before the reply was finished.");
    } catch (error) {
      if (error.name === "AbortError") setNote(article, "stopped", "");
      else setNote(article, "error", "The connection to the server was lost. Reload to see what was saved.");
    } finally {
      controller = null;
      busy(false);
      box.focus();
    }
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  stopButton.addEventListener("click", () => controller?.abort());
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
  });
  box.addEventListener("input", () => localStorage.setItem(draftKey(), box.value));
  box.value = localStorage.getItem(draftKey()) || box.value;
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
  addCopyButtons(list);
  scrollDown();
})();
