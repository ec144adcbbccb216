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
