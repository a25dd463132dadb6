// roles.js: a workspace role's name in the page's language (portal/accounts/model.py Role).

import { t } from "/static/i18n.js";

export const ROLES = ["viewer", "requester", "admin", "owner"];

export function roleName(role) {
  return {
    viewer: t("role.viewer"), requester: t("role.requester"), admin: t("role.admin"),
    owner: t("role.owner"),
  }[role] || role;
}

/** Whether `role` writes transactions and templates: requester and above (a viewer, or a
 * role not told, reads only: portal/API.md "Workspaces and roles"). */
export function writes(role) {
  return ROLES.indexOf(role) >= ROLES.indexOf("requester");
}
