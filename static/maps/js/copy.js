// Copy buttons: <button class="copy" data-copy="input-id"> copies that input's value.

import { t } from "./format.js";

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
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  copyValue(input).then(
    function copied() {
      button.textContent = t("Copied");
      setTimeout(function reset() { button.textContent = label; }, 2000);
    },
    function failed() {
      input.select();
      button.textContent = t("Select and copy");
    },
  );
}

export function wireCopyButtons(root = document) {
  for (const button of root.querySelectorAll("button.copy")) {
    button.addEventListener("click", handleCopyClick);
  }
}
