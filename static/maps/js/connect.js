// The "Connect a phone" page: a copy button per field, report times in local time.

function copyValue(input) {
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(input.value);
  }
  // Plain http (a home server by address): the Clipboard API is not offered there.
  input.focus();
  input.select();
  document.execCommand("copy");
  return Promise.resolve();
}

function handleCopyClick(event) {
  const button = event.currentTarget;
  const input = document.getElementById(button.dataset.copy);
  if (!input) {
    return;
  }
  copyValue(input).then(
    function copied() {
      button.textContent = "Copied";
      setTimeout(function reset() { button.textContent = "Copy"; }, 2000);
    },
    function failed() {
      input.select();
      button.textContent = "Select and copy";
    },
  );
}

function showLocalTimes() {
  for (const element of document.querySelectorAll("time.local-time")) {
    const moment = new Date(element.getAttribute("datetime"));
    if (!Number.isNaN(moment.getTime())) {
      element.textContent = moment.toLocaleString(undefined, {
        dateStyle: "medium", timeStyle: "medium",
      });
      element.title = element.getAttribute("datetime");
    }
  }
}

function main() {
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", handleCopyClick);
  }
  showLocalTimes();
}

main();
