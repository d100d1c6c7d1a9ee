// The owner's page: ask before a form whose button carries data-confirm is sent
// (deleting the room). A listener, not an onsubmit attribute: the Content-Security-Policy
// runs no inline script.

function confirmSubmit(event) {
  const question = event.submitter ? event.submitter.dataset.confirm : "";
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
}

document.addEventListener("submit", confirmSubmit);
