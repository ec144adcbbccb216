// The console's only script: copy buttons, confirmations, and calls' live timelines.
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

// The stream gives the whole timeline from its first entry (and, after a reconnection,
// from just after the last one received), so the list rendered with the page is replaced
// by the stream's own once it starts.
function followTimeline(list) {
  const state = document.getElementById("call-state");
  const source = new EventSource(list.dataset.events);
  let fresh = true;
  source.addEventListener("message", (event) => {
    if (fresh) {
      list.replaceChildren();
      fresh = false;
    }
    list.append(timelineItem(JSON.parse(event.data), list.dataset.startedAt));
  });
  source.addEventListener("end", () => {
    source.close();
    if (state) state.textContent = "Call ended";
  });
}

function timelineItem(step, startedAt) {
  const item = document.createElement("li");
  item.dataset.kind = step.kind;
  const at = document.createElement("time");
  at.dateTime = step.at;
  at.textContent = startedAt ? relative(startedAt, step.at) : step.at;
  const kind = document.createElement("strong");
  kind.textContent = step.kind;
  const detail = document.createElement("code");
  detail.textContent = JSON.stringify(step.detail);
  item.append(at, " ", kind, " ", detail);
  return item;
}

// "+1.234 s" after the call's first step, as the server renders it.
function relative(startedAt, at) {
  const seconds = (Date.parse(at) - Date.parse(startedAt)) / 1000;
  return `+${Math.max(0, seconds).toFixed(3)} s`;
}

// A call's page (with its milestones) is redrawn by the server: each new entry fetches the
// page again and swaps its summary and timeline in place, without reloading it.
function followCallPage(list) {
  const state = document.getElementById("call-state");
  const source = new EventSource(list.dataset.events);
  let pending = null;
  const redraw = async () => {
    pending = null;
    const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    for (const id of ["call-head", "call-summary", "timeline"]) {
      const now = document.getElementById(id);
      const then = fresh.getElementById(id);
      if (now && then) now.replaceChildren(...then.childNodes);
    }
  };
  const soon = () => { if (!pending) pending = setTimeout(redraw, 200); };
  source.addEventListener("message", soon);
  source.addEventListener("end", () => {
    source.close();
    if (state) state.textContent = "Call ended";
    soon();
  });
}

const timeline = document.querySelector("ol[data-events]");
if (timeline && "summary" in timeline.dataset) followCallPage(timeline);
else if (timeline) followTimeline(timeline);

// Importing agents from a CSV file: the upload's progress, then the server's check and import
// (one transaction, so it is shown as under way, not as a fraction), then the page it answers
// with each row's result. Without this script the form posts and the same page comes back.
function importWithProgress(form) {
  const file = form.querySelector("input[type=file]").files[0];
  if (!file) return;
  const box = form.querySelector(".progress");
  const bar = box.querySelector("progress");
  const status = box.querySelector("[role=status]");
  box.hidden = false;
  bar.value = 0;
  status.textContent = "Uploading " + file.name + "…";
  const request = new XMLHttpRequest();
  request.open("POST", form.action);
  request.upload.addEventListener("progress", (event) => {
    if (!event.lengthComputable) return;
    bar.value = Math.round((event.loaded / event.total) * 50);
    status.textContent = "Uploading: " + Math.round((event.loaded / event.total) * 100) + "%";
  });
  request.upload.addEventListener("load", async () => {
    const rows = (await file.text()).split(/\r?\n/).filter((line) => line.trim()).length - 1;
    bar.removeAttribute("value");
    status.textContent = "Uploaded; checking " + rows + " rows and importing them…";
  });
  request.addEventListener("load", () => {
    const answer = new DOMParser().parseFromString(request.responseText, "text/html");
    const main = answer.querySelector("main");
    if (!main) {
      status.textContent = "The import failed: the server answered " + request.status;
      return;
    }
    document.querySelector("main").replaceWith(main);
    const outcome = main.querySelector("[data-testid=import-outcome]");
    const newBox = main.querySelector("#agent-import .progress");
    newBox.hidden = false;
    newBox.querySelector("progress").value = 100;
    newBox.querySelector("[role=status]").textContent =
      outcome ? "Done. " + outcome.textContent : "Refused: see the message above the file.";
  });
  request.addEventListener("error", () => {
    status.textContent = "The upload failed: check the connection and import again.";
  });
  request.send(new FormData(form));
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.id !== "agent-import" || event.defaultPrevented) return;
  if (!form.querySelector("input[type=file]").files.length) return;
  event.preventDefault();
  importWithProgress(form);
});
