"""The signature service used by requesters and signers in the browser."""
