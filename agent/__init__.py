"""The agent daemon: mediates between the signature service's page and the token."""
