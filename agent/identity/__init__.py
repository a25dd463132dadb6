"""The agent's side of identity and the second factor (TOTP, SMS OTP)."""
