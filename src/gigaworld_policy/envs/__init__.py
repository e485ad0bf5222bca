"""Simulators and scripted experts."""
