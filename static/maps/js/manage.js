// The owner's page: copy buttons, times in this browser's zone, and a question before
// a form whose button carries data-confirm is sent (deleting the room). Listeners, not
// attributes: the Content-Security-Policy runs no inline script.

import { wireCopyButtons } from "./copy.js";
import { startTimes } from "./times.js";

function confirmSubmit(event) {
  const question = event.submitter ? event.submitter.dataset.confirm : "";
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
}

document.addEventListener("submit", confirmSubmit);
wireCopyButtons();
startTimes();
