// The console's only script: copy buttons, confirmations, and a test call's live timeline.
// Everything works without it; it only adds to pages rendered on the server.
"use strict";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  try {
    await navigator.clipboard.writeText(button.dataset.copy);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed";
  }
  setTimeout(() => { button.textContent = "Copy"; }, 2000);
});

document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

function followTimeline(list) {
  const state = document.getElementById("call-state");
  const source = new EventSource(list.dataset.events);
  source.addEventListener("step", (event) => {
    const step = JSON.parse(event.data);
    const item = document.createElement("li");
    const at = document.createElement("time");
    at.textContent = step.at;
    const kind = document.createElement("strong");
    kind.textContent = step.kind;
    const detail = document.createElement("code");
    detail.textContent = JSON.stringify(step.detail);
    item.append(at, " ", kind, " ", detail);
    list.append(item);
  });
  source.addEventListener("end", () => {
    source.close();
    if (state) state.textContent = "Call ended";
  });
}

const timeline = document.querySelector("ol[data-events]");
if (timeline) followTimeline(timeline);
