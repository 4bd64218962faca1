// The quote cards' Helpful / Not helpful buttons, sent without leaving the page. Without
// JavaScript the same forms POST to /feedback, which returns to the answer.
"use strict";

(function () {
  const THANKS = "Thank you: your feedback was recorded.";

  function say(form, text) {
    let line = form.querySelector(".feedback-error");
    if (!line) {
      line = document.createElement("span");
      line.className = "feedback-error";
      line.setAttribute("role", "alert");
      form.appendChild(line);
    }
    line.textContent = text;
  }

  function thank(form) {
    const note = document.createElement("p");
    note.className = "feedback-thanks";
    note.setAttribute("role", "status");
    note.tabIndex = -1;
    note.textContent = THANKS;
    form.replaceWith(note);
    note.focus();
  }

  async function send(form, verdict) {
    const data = new FormData(form);
    const body = {
      question: data.get("question"),
      doc_id: data.get("doc_id"),
      start: Number(data.get("start")),
      end: Number(data.get("end")),
      content_hash: data.get("content_hash"),
      verdict: verdict,
    };
    const response = await fetch("/api/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (response.status === 201) {
      return null;
    }
    const problem = await response.json().catch(() => null);
    const message = (problem && problem.error && problem.error.message) || response.statusText;
    const wait = response.headers.get("Retry-After");
    return wait ? `${message} (retry in ${wait} s)` : message;
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    const button = event.submitter;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("feedback")) {
      return;
    }
    if (!button || !button.value) {
      return; // no verdict to send: let the form post as it would without JavaScript
    }
    event.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    let problem;
    try {
      problem = await send(form, button.value);
    } catch (error) {
      problem = "could not send the feedback; check the connection and try again";
    }
    if (problem === null) {
      thank(form);
      return;
    }
    buttons.forEach((b) => { b.disabled = false; });
    say(form, problem);
  });
})();
