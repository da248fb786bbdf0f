// The sandbox console: polls the panes and sends what the person does to /sandbox/*.
// Plain JavaScript, no build step. Every pane's HTML is rendered (and escaped) by the server.
(function () {
  "use strict";
  const POLL_MS = 1500;
  const state = {
    channel: document.body.dataset.start || document.body.dataset.dm,
    thread: null,
    mail: null,
    modal: null, // {id, hash} of the modal shown
    shown: {},
    choices: "",
    seen: {}, // messages per conversation when the person last had it open
  };
  const $ = (id) => document.getElementById(id);

  let statusTimer = null;
  function status(note, ok) {
    const bar = $("status");
    bar.textContent = note || "";
    bar.className = "status " + (ok === false ? "bad" : "good");
    clearTimeout(statusTimer);
    statusTimer = setTimeout(() => { bar.textContent = ""; }, ok === false ? 15000 : 6000);
  }

  async function post(path, fields) {
    const body = fields instanceof FormData ? fields : new FormData();
    if (!(fields instanceof FormData)) {
      for (const [key, value] of Object.entries(fields)) {
        if (value !== null && value !== undefined) body.append(key, value);
      }
    }
    let answer;
    try {
      const response = await fetch("/sandbox" + path, {
        method: "POST",
        body,
        headers: { "X-Sandbox-Console": "1" },
      });
      answer = await response.json();
    } catch (error) {
      answer = { ok: false, note: "the console could not reach the app: " + error };
    }
    // A refusal before the console's own code ran (the Host or the header check) says why
    // in FastAPI's `detail`.
    if (!answer.note && answer.detail) answer.note = String(answer.detail);
    if (answer.note) status(answer.note, answer.ok);
    // A click on a card that changed since it was drawn: draw every pane again.
    if (answer.changed) state.shown = {};
    refresh();
    return answer;
  }

  function setHtml(id, html) {
    if (state.shown[id] === html) return false;
    state.shown[id] = html;
    $(id).innerHTML = html;
    return true;
  }

  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }

  let refreshing = false;
  let again = false;
  async function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const query = new URLSearchParams({ channel: state.channel });
      if (state.thread) query.set("thread", state.thread);
      if (state.mail) query.set("mail", state.mail);
      const response = await fetch("/sandbox/panes?" + query);
      if (response.ok) show(await response.json());
    } catch (error) {
      status("the console lost the app: " + error, false);
    } finally {
      refreshing = false;
      if (again) { again = false; refresh(); }
    }
  }

  function show(panes) {
    setHtml("channels", panes.channels);
    $("title").textContent = panes.title;
    const messages = $("messages");
    const stick = nearBottom(messages);
    if (setHtml("messages", panes.messages) && stick) messages.scrollTop = messages.scrollHeight;
    $("thread-pane").hidden = !state.thread;
    setHtml("thread", panes.thread);
    setHtml("mailbox", panes.mailbox);
    setHtml("clock", panes.clock);
    setHtml("deliveries", panes.deliveries);
    showChoices(panes.sent_choices);
    showUnread(panes.counts || {});
    showModal(panes.modal);
  }

  // A conversation that got messages since the person last had it open shows how many.
  function showUnread(counts) {
    for (const [id, count] of Object.entries(counts)) {
      if (state.seen[id] === undefined || id === state.channel) state.seen[id] = count;
    }
    document.querySelectorAll("#channels [data-channel-id]").forEach((button) => {
      const id = button.dataset.channelId;
      const fresh = (counts[id] || 0) - (state.seen[id] || 0);
      let badge = button.querySelector(".badge");
      if (fresh > 0) {
        if (!badge) {
          badge = document.createElement("span");
          badge.className = "badge";
          button.appendChild(badge);
        }
        badge.textContent = String(fresh);
        button.classList.add("unread");
      } else {
        if (badge) badge.remove();
        button.classList.remove("unread");
      }
    });
  }

  // A sample reply is built from the email it answers: the compose fields are not used.
  function showSample() {
    const option = $("sample").selectedOptions[0];
    const picked = Boolean(option && option.value);
    $("compose-fields").hidden = picked;
    const note = $("sample-note");
    note.hidden = !picked;
    if (picked) {
      const select = $("in-reply-to");
      if (!select.value && select.length > 1) select.selectedIndex = 1; // the newest sent
      const answered = select.selectedOptions[0];
      note.textContent = (answered && answered.value
        ? "Built as " + (answered.dataset.toName || answered.dataset.to) + "’s answer to “"
          + answered.dataset.subject + "”. "
        : "Pick the sent email it answers under “In reply to” (approve a card first). ")
        + "Expected: " + option.dataset.expect;
      $("deliver-button").textContent = "Deliver “" + option.textContent + "” and push";
    } else {
      $("deliver-button").textContent = "Deliver and push";
    }
  }
  function showChoices(choices) {
    const key = JSON.stringify(choices);
    if (key === state.choices) return;
    state.choices = key;
    const select = $("in-reply-to");
    const keep = select.value;
    select.length = 1;
    for (const choice of choices) {
      const who = choice.to_name ? choice.to_name + " <" + choice.to + ">" : choice.to;
      const option = new Option(choice.subject + " → " + who, choice.id);
      option.dataset.to = choice.to;
      option.dataset.toName = choice.to_name || "";
      option.dataset.subject = choice.subject;
      select.add(option);
    }
    select.value = keep;
    if ($("sample").value) showSample();
  }

  function showModal(modal) {
    const layer = $("modal-layer");
    if (!modal) {
      state.modal = null;
      layer.hidden = true;
      layer.innerHTML = "";
      return;
    }
    if (state.modal && state.modal.id === modal.id && state.modal.hash === modal.hash) return;
    state.modal = { id: modal.id, hash: modal.hash };
    layer.innerHTML = modal.html;
    layer.hidden = false;
    const first = layer.querySelector("input, textarea, select");
    if (first) first.focus();
  }

  function confirmFirst(button) {
    const template = button.parentElement.querySelector("template.sb-confirm");
    if (!template) return Promise.resolve(true);
    return new Promise((resolve) => {
      const layer = $("confirm-layer");
      const box = $("confirm-box");
      box.innerHTML = "";
      box.appendChild(template.content.cloneNode(true));
      layer.hidden = false;
      box.onclick = (event) => {
        const yes = event.target.closest("[data-confirm]");
        const no = event.target.closest("[data-deny]");
        if (!yes && !no) return;
        layer.hidden = true;
        resolve(Boolean(yes));
      };
    });
  }

  function act(element, value) {
    const container = element.closest("[data-container]");
    if (!container) return;
    if (container.dataset.container === "ephemeral") {
      status("the console cannot click an ephemeral message's buttons", false);
      return;
    }
    // What the element is, besides where: the server refuses the click when another
    // element sits there now (the card changed since the page drew it).
    post("/action", {
      container: container.dataset.container,
      channel: container.dataset.channel || "",
      ts: container.dataset.ts || "",
      view_id: container.dataset.viewId || "",
      loc: element.dataset.loc,
      action_id: element.dataset.actionId || "",
      block_id: element.dataset.blockId || "",
      button_value: element.dataset.buttonValue || "",
      value: value,
    });
  }

  document.addEventListener("click", async (event) => {
    const target = event.target;
    const conversation = target.closest("[data-channel-id]");
    if (conversation) {
      state.channel = conversation.dataset.channelId;
      state.thread = null;
      // Opening the Home tab is what makes Slack ask the app for it.
      if (state.channel === "home") return post("/home", {});
      return refresh();
    }
    const suggestion = target.closest("[data-suggest]");
    if (suggestion) {
      if (suggestion.dataset.suggestChannel) {
        state.channel = suggestion.dataset.suggestChannel;
        state.thread = null;
        refresh();
      }
      const box = $("command-text");
      box.value = suggestion.dataset.suggest;
      box.focus();
      status("press Enter to send " + suggestion.dataset.suggest);
      return;
    }
    const threadLink = target.closest("[data-thread-ts]");
    if (threadLink) {
      state.thread = threadLink.dataset.threadTs;
      return refresh();
    }
    const mailRow = target.closest("[data-mail-thread]");
    if (mailRow) {
      const id = mailRow.dataset.mailThread;
      state.mail = state.mail === id ? null : id;
      return refresh();
    }
    const clock = target.closest("[data-clock]");
    if (clock) return post("/clock", { hours: clock.dataset.clock });
    const toggle = target.closest(".sb-overflow-toggle");
    if (toggle) {
      const menu = toggle.nextElementSibling;
      menu.hidden = !menu.hidden;
      return;
    }
    const close = target.closest("[data-close]");
    if (close && state.modal) {
      return post("/close", { view_id: state.modal.id, whole: close.dataset.close === "all" ? "1" : "" });
    }
    const item = target.closest(".sb-menu-item[data-loc]");
    if (item) {
      item.closest(".sb-menu").hidden = true;
      return act(item, item.dataset.value);
    }
    const button = target.closest("button[data-loc]");
    if (button) {
      if (!(await confirmFirst(button))) return;
      if (button.dataset.url) window.open(button.dataset.url, "_blank", "noopener");
      return act(button, null);
    }
    document.querySelectorAll(".sb-menu").forEach((menu) => { menu.hidden = true; });
  });

  document.addEventListener("change", (event) => {
    const select = event.target.closest("select.sb-select[data-loc]");
    if (select && select.value) act(select, select.value);
    if (event.target.id === "sample") showSample();
    if (event.target.id === "in-reply-to") {
      const option = event.target.selectedOptions[0];
      if (option && option.value) {
        $("deliver-from").value = option.dataset.to;
        const subject = option.dataset.subject;
        $("deliver-subject").value = /^re:/i.test(subject) ? subject : "Re: " + subject;
      }
      if ($("sample").value) showSample();
    }
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    event.preventDefault();
    if (form.id === "command-form") {
      const text = $("command-text").value.trim();
      if (!text) return;
      status("sending " + text + " …");
      const answer = await post("/command", { channel: state.channel, text });
      if (answer.ok) $("command-text").value = "";
      return;
    }
    if (form.id === "deliver-form") {
      const fields = new FormData(form);
      if (fields.get("sample")) {
        for (const name of ["from_addr", "subject", "body"]) fields.delete(name);
      }
      const answer = await post("/mail", fields);
      if (answer.ok) { $("deliver-body").value = ""; }
      return;
    }
    if (form.classList.contains("sb-modal") && form.dataset.viewId) {
      form.querySelectorAll("[data-error-for]").forEach((el) => { el.textContent = ""; });
      const fields = new FormData(form);
      fields.append("view_id", form.dataset.viewId);
      const answer = await post("/submit", fields);
      for (const [blockId, message] of Object.entries(answer.errors || {})) {
        const slot = form.querySelector('[data-error-for="' + CSS.escape(blockId) + '"]');
        if (slot) slot.textContent = message;
      }
    }
  });

  $("thread-close").addEventListener("click", () => { state.thread = null; refresh(); });
  refresh();
  setInterval(refresh, POLL_MS);
})();
