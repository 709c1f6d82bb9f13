// The confirmation dialog for actions that cut users off.

/**
 * confirmDialog wires the dialog's buttons and returns confirmAction({title, body, ok}), a
 * promise of whether the operator confirmed.
 */
export function confirmDialog(el) {
  let resolveOpen = null;
  el.dialogOK.addEventListener("click", () => el.dialog.close("ok"));
  el.dialogCancel.addEventListener("click", () => el.dialog.close("cancel"));
  el.dialog.addEventListener("close", () => {
    const resolve = resolveOpen;
    resolveOpen = null;
    resolve?.(el.dialog.returnValue === "ok");
  });
  return ({ title, body, ok }) => new Promise((resolve) => {
    el.dialogTitle.textContent = title;
    el.dialogBody.textContent = body;
    el.dialogOK.textContent = ok;
    el.dialog.returnValue = "";
    resolveOpen = resolve;
    el.dialog.showModal();
    el.dialogCancel.focus();
  });
}
