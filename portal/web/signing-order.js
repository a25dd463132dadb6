// signing-order.js: the signing order and reminders of a new transaction or template
// (portal/API.md "Transaction parameters": signingOrder parallel / sequential / groups,
// each signer's group 1..20 with groups, reminderDays 1..30), shared by /requester and
// /templates. The order is a <select>; each signer row gets a group field, shown only
// when the order is by groups.

import { el } from "/static/api.js";
import { t } from "/static/i18n.js";

/** The group field of one signer (or role) row; `id` makes its element ids. */
export function groupField(id) {
  return el("div", { "data-group-field": "1", hidden: true },
    el("label", { for: id("group"), "data-i18n": "order.group", text: t("order.group") }),
    el("input", { id: id("group"), type: "number", min: "1", max: "20", step: "1", value: "1",
                  "data-field": "group" }));
}

/** Shows the group fields in `rows` only when `order` is "groups". */
export function showGroups(rows, order) {
  for (const field of rows.querySelectorAll("[data-group-field]")) field.hidden = order !== "groups";
}

/** Keeps the group fields in `rows` shown as the order select `select` says. */
export function bindOrder(select, rows) {
  select.addEventListener("change", () => showGroups(rows, select.value));
  new MutationObserver(() => showGroups(rows, select.value)).observe(rows, { childList: true });
}

/** One row's fields as the API takes them: the group a number, and only with groups. */
export function rowValues(row, order) {
  const values = {};
  for (const input of row.querySelectorAll("[data-field]")) {
    const value = input.value.trim();
    if (!value) continue;
    if (input.dataset.field === "group") {
      if (order === "groups") values.group = Number(value);
    } else {
      values[input.dataset.field] = value;
    }
  }
  return values;
}

/** The body's order and reminder fields (no reminderDays when the field is empty). */
export function orderParameters(order, reminders) {
  const days = reminders.trim();
  return days ? { signingOrder: order, reminderDays: Number(days) } : { signingOrder: order };
}

/** A problem with the reminder days or a group number, as a sentence, or null. */
export function orderProblem(order, reminders, rows) {
  const days = reminders.trim();
  if (days && !(Number.isInteger(Number(days)) && Number(days) >= 1 && Number(days) <= 30)) {
    return t("order.badReminders");
  }
  if (order !== "groups") return null;
  for (const [index, input] of [...rows.querySelectorAll('[data-field="group"]')].entries()) {
    const n = Number(input.value);
    if (!Number.isInteger(n) || n < 1 || n > 20) return t("order.badGroup", { n: index + 1 });
  }
  return null;
}
