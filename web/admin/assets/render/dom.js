// DOM helpers every view uses. Everything the server sends is written with textContent, never
// parsed as HTML: tenant names and subjects come from untrusted users.

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

/** cell is a table cell whose data-label names its column where rows are shown as cards. */
export function cell(label, props, ...children) {
  return h("td", { role: "cell", "data-label": label || undefined, ...props }, ...children);
}

export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

export function show(node, visible) {
  node.hidden = !visible;
}

export function showError(node, message) {
  node.textContent = message || "";
  show(node, Boolean(message));
}

/**
 * syncRows makes tbody hold one row per item, in order, reusing the rows it already has so
 * that a focused link or button survives the once-a-second refresh.
 */
export function syncRows(tbody, items, keyOf, create, update) {
  const existing = new Map();
  for (const tr of tbody.rows) existing.set(tr.dataset.key, tr);
  const wanted = items.map((item) => {
    const key = keyOf(item);
    let tr = existing.get(key);
    if (!tr) {
      tr = create(item);
      tr.dataset.key = key;
    }
    existing.delete(key);
    update(tr, item);
    return tr;
  });
  for (const tr of existing.values()) tr.remove();
  const inOrder = wanted.every((tr, i) => tbody.rows[i] === tr) && tbody.rows.length === wanted.length;
  if (!inOrder) {
    const focused = document.activeElement;
    tbody.append(...wanted);
    if (focused && focused !== document.activeElement && tbody.contains(focused)) focused.focus();
  }
}
