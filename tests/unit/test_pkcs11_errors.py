"""The one CKR -> domain error mapping of the PKCS#11 backend (`error_for_pkcs11`)."""

from __future__ import annotations

import ctypes

import pytest
from pkcs11 import exceptions as p11e
from pkcs11.constants import TokenFlag
from pkcs11.mechanisms import Mechanism

from agent.tokens import errors as domain
from agent.tokens.model import KeyType, SignatureAlgorithm
from agent.tokens.pkcs11 import (
    PKCS11_CODE_RULES,
    PKCS11_ERROR_RULES,
    attempts_left_from_flags,
    error_for_pkcs11,
    signing_input,
)
from agent.tokens.pkcs11.ckr import RV_EXCEPTIONS, exception_for_rv

EXPECTED: dict[type[p11e.PKCS11Error], type[domain.TokenError]] = {
    p11e.PinIncorrect: domain.InvalidPin,
    p11e.PinLocked: domain.PinBlocked,
    p11e.PinInvalid: domain.PinFormatInvalid,
    p11e.PinLenRange: domain.PinFormatInvalid,
    p11e.PinTooWeak: domain.PinFormatInvalid,
    p11e.PinExpired: domain.NotAuthenticated,
    p11e.UserNotLoggedIn: domain.NotAuthenticated,
    p11e.UserPinNotInitialized: domain.NotAuthenticated,
    p11e.FunctionCancelled: domain.NotAuthenticated,
    p11e.UserAlreadyLoggedIn: domain.OperationFailed,
    p11e.AnotherUserAlreadyLoggedIn: domain.OperationFailed,
    p11e.UserTooManyTypes: domain.OperationFailed,
    p11e.TokenNotPresent: domain.TokenRemoved,
    p11e.DeviceRemoved: domain.TokenRemoved,
    p11e.SlotIDInvalid: domain.TokenRemoved,
    p11e.TokenNotRecognised: domain.TokenRemoved,
    p11e.NoSuchToken: domain.TokenRemoved,
    p11e.DeviceError: domain.CommunicationError,
    p11e.GeneralError: domain.CommunicationError,
    p11e.HostMemory: domain.CommunicationError,
    p11e.SessionHandleInvalid: domain.CommunicationError,
    p11e.SessionClosed: domain.CommunicationError,
    p11e.SessionCount: domain.CommunicationError,
    p11e.MechanismInvalid: domain.UnsupportedMechanism,
    p11e.MechanismParamInvalid: domain.UnsupportedMechanism,
    p11e.KeyTypeInconsistent: domain.UnsupportedMechanism,
    p11e.KeySizeRange: domain.UnsupportedMechanism,
    p11e.FunctionNotSupported: domain.UnsupportedMechanism,
    p11e.DomainParamsInvalid: domain.UnsupportedMechanism,
    p11e.KeyHandleInvalid: domain.KeyNotFound,
    p11e.ObjectHandleInvalid: domain.KeyNotFound,
    p11e.NoSuchKey: domain.KeyNotFound,
    p11e.DataLenRange: domain.InvalidInput,
    p11e.DataInvalid: domain.InvalidInput,
    p11e.DeviceMemory: domain.OperationFailed,
    p11e.TokenWriteProtected: domain.OperationFailed,
    p11e.SessionReadOnly: domain.OperationFailed,
    p11e.TemplateIncomplete: domain.OperationFailed,
    p11e.TemplateInconsistent: domain.OperationFailed,
    p11e.AttributeValueInvalid: domain.OperationFailed,
    p11e.AttributeTypeInvalid: domain.OperationFailed,
    p11e.AttributeReadOnly: domain.OperationFailed,
    p11e.AttributeSensitive: domain.OperationFailed,
    p11e.FunctionFailed: domain.OperationFailed,
    p11e.OperationActive: domain.OperationFailed,
    p11e.ArgumentsBad: domain.OperationFailed,
}


def test_every_rule_is_tested() -> None:
    assert set(EXPECTED) == set(PKCS11_ERROR_RULES)


CASES = sorted(EXPECTED.items(), key=lambda case: case[0].__name__)


@pytest.mark.parametrize(("exc_type", "expected"), CASES, ids=[c[0].__name__ for c in CASES])
def test_each_ckr_class_maps_to_its_domain_error(exc_type: type[p11e.PKCS11Error],
                                                 expected: type[domain.TokenError]) -> None:
    error = error_for_pkcs11(exc_type(), what="op")
    assert type(error) is expected
    assert str(error)


def test_invalid_pin_takes_attempts_from_the_token_flags() -> None:
    def left(flags: int | None) -> int | None:
        error = error_for_pkcs11(p11e.PinIncorrect(), token_flags=flags)
        assert isinstance(error, domain.InvalidPin)
        return error.attempts_left

    assert left(None) is None
    assert left(0) is None
    assert left(TokenFlag.USER_PIN_COUNT_LOW) is None  # "low" says no number
    assert left(TokenFlag.USER_PIN_COUNT_LOW | TokenFlag.USER_PIN_FINAL_TRY) == 1
    assert left(TokenFlag.USER_PIN_LOCKED) == 0


def test_attempts_left_from_flags() -> None:
    assert attempts_left_from_flags(TokenFlag.RNG | TokenFlag.LOGIN_REQUIRED) is None
    assert attempts_left_from_flags(TokenFlag.USER_PIN_FINAL_TRY) == 1
    assert attempts_left_from_flags(TokenFlag.USER_PIN_LOCKED | TokenFlag.USER_PIN_FINAL_TRY) == 0


def test_key_not_found_names_the_key() -> None:
    error = error_for_pkcs11(p11e.NoSuchKey(), what="01")
    assert isinstance(error, domain.KeyNotFound)
    assert error.key_ref == "01"


def test_subclass_uses_its_parents_rule() -> None:
    class VendorPinIncorrect(p11e.PinIncorrect):
        pass

    assert isinstance(error_for_pkcs11(VendorPinIncorrect()), domain.InvalidPin)


def test_codes_python_pkcs11_has_no_class_for() -> None:
    """python-pkcs11 words these 'Unmapped error code 0x..'; some have a rule by code."""
    for code, expected in ((0x68, domain.UnsupportedMechanism), (0x1B, domain.UnsupportedMechanism),
                           (0x190, domain.CommunicationError)):
        assert code in PKCS11_CODE_RULES
        assert type(error_for_pkcs11(p11e.PKCS11Error(f"Unmapped error code {hex(code)}"))) \
            is expected
    other = error_for_pkcs11(p11e.PKCS11Error("Unmapped error code 0x80000123"))
    assert type(other) is domain.OperationFailed
    assert other.code == 0x80000123
    plain = error_for_pkcs11(p11e.PKCS11Error("Initialisation error (already initialized)"))
    assert type(plain) is domain.OperationFailed
    assert plain.code is None


def test_ctypes_codes_become_the_same_exceptions() -> None:
    """Calls made through ctypes raise what python-pkcs11 would, so one mapping serves both."""
    assert type(exception_for_rv(0xA0, "C_Login")) is p11e.PinIncorrect
    assert type(exception_for_rv(0xA4, "C_Login")) is p11e.PinLocked
    assert type(exception_for_rv(0xB3, "C_Sign")) is p11e.SessionHandleInvalid
    assert type(exception_for_rv(0xE0, "C_Sign")) is p11e.TokenNotPresent
    assert type(exception_for_rv(0x32, "C_Sign")) is p11e.DeviceRemoved
    assert type(exception_for_rv(0x30, "C_Sign")) is p11e.DeviceError
    assert type(exception_for_rv(0x101, "C_Sign")) is p11e.UserNotLoggedIn
    for rv, cls in RV_EXCEPTIONS.items():
        assert type(exception_for_rv(rv, "C_X")) is cls
    unmapped = exception_for_rv(0x68, "C_SignInit")
    assert type(unmapped) is p11e.PKCS11Error
    assert type(error_for_pkcs11(unmapped)) is domain.UnsupportedMechanism


def test_mapped_errors_chain_with_raise_from() -> None:
    """The backend raises the mapped error `from` the PKCS#11 one; the mapping itself never
    raises."""
    cause = p11e.DeviceRemoved()
    with pytest.raises(domain.TokenRemoved) as info:
        try:
            raise cause
        except p11e.PKCS11Error as exc:
            raise error_for_pkcs11(exc, what="sign") from exc
    assert info.value.__cause__ is cause


@pytest.mark.parametrize("name", ["ECDSA_SHA256", "ECDSA_SHA384", "ECDSA_SHA512"])
def test_ecdsa_input_is_the_digest_cut_to_the_curve(name: str) -> None:
    algorithm = SignatureAlgorithm.parse(name)
    digest = bytes(range(algorithm.hash.digest_size))
    for key_type, size in ((KeyType.EC_P256, 32), (KeyType.EC_P384, 48)):
        mechanism, parameter, data = signing_input(algorithm, key_type, digest)
        assert mechanism is Mechanism.ECDSA and parameter is None
        assert data == digest[:size]


def test_rsa_inputs() -> None:
    digest = bytes(32)
    mechanism, parameter, data = signing_input(
        SignatureAlgorithm.parse("RSA_PKCS1V15_SHA256"), KeyType.RSA_2048, digest)
    assert mechanism is Mechanism.RSA_PKCS and parameter is None
    assert data == bytes.fromhex("3031300d060960864801650304020105000420") + digest
    mechanism, parameter, data = signing_input(
        SignatureAlgorithm.parse("RSA_PSS_SHA256"), KeyType.RSA_2048, digest)
    assert mechanism is Mechanism.RSA_PKCS_PSS and data == digest
    # CK_RSA_PKCS_PSS_PARAMS: CKM_SHA256, CKG_MGF1_SHA256, 32, each a native CK_ULONG
    assert parameter == b"".join(bytes(ctypes.c_ulong(v)) for v in (0x250, 0x2, 32))


def test_signing_input_refuses_misfits() -> None:
    with pytest.raises(domain.InvalidInput):
        signing_input(SignatureAlgorithm.parse("ECDSA_SHA384"), KeyType.EC_P384, bytes(32))
    with pytest.raises(domain.UnsupportedMechanism):
        signing_input(SignatureAlgorithm.parse("RSA_PSS_SHA256"), KeyType.EC_P256, bytes(32))
    with pytest.raises(domain.UnsupportedMechanism):
        signing_input(SignatureAlgorithm.parse("ECDSA_SHA256"), KeyType.RSA_2048, bytes(32))
