"""The PKCS#11 backend: a `Token` over any Cryptoki module, through python-pkcs11.

Modules are loaded once per process (`Pkcs11Module`, cached by real path) and each
`Pkcs11Token` holds one session of its own, used only from the token's worker thread.
python-pkcs11 0.10 does most of the work; the few calls where it cannot do what the
security model needs go straight to the module's CK_FUNCTION_LIST through ctypes.

One concern per module, imports pointing down the list:

* `module`: modules found, loaded and C_Initialize'd once (OS locking), slots listed.
* `token`: `Pkcs11Token`, the `Token` surface.
* `session`: the token's one session, checked, reopened after a loss, logged in for
  one block only (SECURITY #36).
* `objects`: key and certificate objects read by CKA_ID.
* `mechanisms`: signature algorithm to CKM_* and back.
* `cryptoki`: the ctypes calls (C_Initialize, C_Login, C_Sign, ...), PINs in wiped buffers.
* `slot`: what CK_SLOT_INFO and CK_TOKEN_INFO say.
* `ckr`: CKR codes to domain errors, in one place (`error_for_pkcs11`).

Traces of PKCS#11 calls go to the TRAFFIC level (below DEBUG); a PIN appears in them
only as its length.
"""

from agent.tokens.pkcs11.ckr import (
    PKCS11_CODE_RULES,
    PKCS11_ERROR_RULES,
    attempts_left_from_flags,
    error_for_pkcs11,
)
from agent.tokens.pkcs11.mechanisms import signing_input
from agent.tokens.pkcs11.module import Pkcs11Module, default_module_paths
from agent.tokens.pkcs11.slot import Pkcs11Slot
from agent.tokens.pkcs11.token import Pkcs11Token

__all__ = [
    "PKCS11_CODE_RULES",
    "PKCS11_ERROR_RULES",
    "Pkcs11Module",
    "Pkcs11Slot",
    "Pkcs11Token",
    "attempts_left_from_flags",
    "default_module_paths",
    "error_for_pkcs11",
    "signing_input",
]
