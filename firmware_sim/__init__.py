"""A simulated PIV card written as card firmware (NIST SP 800-73-4)."""
