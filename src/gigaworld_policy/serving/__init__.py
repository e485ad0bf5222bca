"""Deployment: an openpi-protocol websocket policy server, its client and an action-chunk broker."""
