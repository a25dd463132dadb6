"""The wire: JSON-RPC over WebSocket, the closed list of error codes, origin security."""
