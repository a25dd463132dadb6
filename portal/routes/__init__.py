"""The portal's HTTP layer (portal/API.md), one module per audience; the route table and
`create_app` are in portal/service.py.

- `requester.py`: the requester's REST API (`/api/v1/transactions...`, also under
  `/api/v1/workspaces/{ws}/...`), the testers' outbox and the OpenAPI document.
- `accounts.py`: the requesters' accounts route table: `signin.py` (password, TOTP,
  sessions, reset and invitation links), `oidc_signin.py` (OpenID Connect),
  `settings.py` (personal settings, API tokens), `workspaces.py` (workspaces, members).
- `signer.py`: the signer's steps (`/api/s/{invite}/...`); the invitation link is the
  credential.
- `enrolment.py`: the first-time signer's enrolment calls
  (`/api/s/{invite}/enrolment/{step}`); the domain logic is portal/enrolment.py.
- `space.py`: Personal Space (`/api/me...`).
- `agent_sms.py`: the SMS OTP routes the signers' agents call (`/api/v1/sms-otp/...`).
- `identity.py`: the identity service, mounted at `/api/identity/`.
- `pages.py`: the HTML pages (templates in portal/templates/), legal texts, static
  files, health.
- `middleware.py`: errors mapped once, security headers and the CSP, the cross-site check.

Below them: `state.py` (the `Portal` every handler reaches), `access.py` (who may call:
`principal`, `member` of a workspace with a role, `service_admin`, `csrf_check`;
invitation and Personal Space links and sessions), `parse.py`
(bodies and fields), `views.py` (the JSON views and PDF answers). Imports point one way:
service -> audience modules -> views/access/parse -> state -> the domain modules.
"""
