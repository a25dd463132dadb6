"""The certification authority: qualified certificates under QCP-n-qscd."""
