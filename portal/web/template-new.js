// template-new.js: the /templates form that makes a template from uploaded documents,
// named signer roles, the signing order (parallel, sequential or groups, each role's
// group) and parameters (level, reminders, the invitation's message), over
// POST /api/v1/workspaces/{ws}/templates (portal/API.md "Templates": title, documents,
// roles, parameters).

import { blobToBase64, el, explain } from "/static/api.js";
import { t } from "/static/i18n.js";
import { bindOrder, groupField, orderParameters, orderProblem, rowValues } from "/static/signing-order.js";

const $ = (id) => document.getElementById(id);
let roleSeq = 0;

function relabel() {
  [...$("new-roles").children].forEach((row, index) => {
    const n = index + 1;
    row.querySelector("[data-field=role]").setAttribute("aria-label", t("templates.roleName", { n }));
    const remove = row.querySelector("button");
    remove.textContent = t("templates.removeRole");
    remove.setAttribute("aria-label", t("templates.removeRoleLabel", { n }));
    remove.disabled = $("new-roles").children.length === 1;
  });
  for (const label of $("new-roles").querySelectorAll("[data-i18n]")) label.textContent = t(label.dataset.i18n);
}

function addRole() {
  const n = ++roleSeq;
  const id = (field) => `new-role-${n}-${field}`;
  const row = el("div", { class: "grid two", "data-role-row": String(n) },
    el("div", {}, el("input", { id: id("role"), type: "text", maxlength: "100", required: true,
                                autocomplete: "off", "data-field": "role" })),
    groupField(id),
    el("div", { class: "actions" }, el("button", { type: "button", class: "danger", onclick: () => {
      if ($("new-roles").children.length > 1) row.remove();
      relabel();
    } })));
  $("new-roles").append(row);
  relabel();
  return row;
}

function problem() {
  const roles = [...$("new-roles").querySelectorAll("[data-field=role]")];
  if (!$("new-name").value.trim() || !$("new-title").value.trim() ||
      $("new-documents").files.length === 0 || roles.some((r) => !r.value.trim())) {
    return t("templates.needNew");
  }
  return orderProblem($("new-order").value, $("new-reminders").value, $("new-roles"));
}

async function body() {
  const documents = [];
  for (const file of $("new-documents").files) {
    documents.push({ name: file.name, content: await blobToBase64(file) });
  }
  const order = $("new-order").value;
  const message = $("new-message").value.trim();
  return {
    name: $("new-name").value.trim(), title: $("new-title").value.trim(), documents,
    roles: [...$("new-roles").children].map((row) => rowValues(row, order)),
    parameters: { ...orderParameters(order, $("new-reminders").value), level: $("new-level").value,
                  ...(message ? { message } : {}) },
  };
}

/** Wires the form: `post(body)` sends it, `done(template)` follows a success,
 * `notice(text, kind)` says what happened. */
export function wireNewTemplate({ post, done, notice }) {
  addRole();
  bindOrder($("new-order"), $("new-roles"));
  $("new-add-role").addEventListener("click", () => addRole().querySelector("input").focus());
  $("new-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const wrong = problem();
    if (wrong) {
      notice(wrong, "error");
      return;
    }
    $("new-submit").disabled = true;
    try {
      const tpl = await post(await body());
      $("new-form").reset();
      $("new-roles").replaceChildren();
      addRole();
      await done(tpl);
    } catch (error) {
      notice(explain(error), "error");
    } finally {
      $("new-submit").disabled = false;
    }
  });
}

export function relabelNewTemplate() {
  relabel();
}
