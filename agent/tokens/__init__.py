"""The token layer: one `Token` interface over PIV cards through PC/SC and over
PKCS#11 modules, a registry with hot-plug, one worker thread per token."""
